"""The one Markdown table writer of every report stochdef writes (evaluate, reproduce, crosscheck).

>>> print("\\n".join(markdown_table(["model", "acc"], [["mlp", 0.5], ["a|b", None]])))
| model | acc |
| --- | --- |
| mlp | 0.5 |
| a\\|b | None |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["markdown_table"]


def _cell(value: object) -> str:
    """A cell's text: ``str(value)`` with pipes escaped and line breaks as spaces (a row is one line)."""
    return " ".join(str(value).replace("|", "\\|").splitlines())


def markdown_table(columns: Sequence[object], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a GitHub-flavoured Markdown table: a header, the rule, one line per row."""
    header = [_cell(c) for c in columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} cells, the header {len(header)}: {list(row)!r}")
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return lines
