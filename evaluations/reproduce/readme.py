"""The reproduction section, generated from the committed reports: no number or reading typed by hand.

:func:`section` is, per target of :data:`~stochdef.evaluations.reproduce.TARGETS`, its ``report.md`` as
``stochdef reproduce TARGET`` wrote it (headings one level down, figure links relative to the repository
root). The documentation's page of paper reproductions is built from it at every docs build
(``docs/_ext/pages.py``). A README that carries the block between the markers ``<!-- reproduce results -->``
and ``<!-- benchmark results -->`` has it rewritten by :func:`update`
(``python -m stochdef.evaluations.reproduce.readme``), and the test suite checks it against :func:`section`.

Example:
    >>> shift_headings("## A\\ntext\\n#### B")
    '### A\\ntext\\n##### B'
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from stochdef.defenses.files import atomic_write_text

from . import TARGETS

START = "<!-- reproduce results -->"
END = "<!-- benchmark results -->"
INTRO = (
    "## Paper reproductions (`stochdef reproduce TARGET`)\n\n"
    "Each paper's headline table re-run on our data, the paper's numbers beside ours and our EoT-attack numbers "
    "beside both; each report below (setting, reading, tables) is the one `stochdef reproduce TARGET` wrote. "
    "Reports, data and plots: `evaluations/reports/reproduce/<target>/`.\n"
)
LINK_ROOT = "evaluations/reports/reproduce"


def shift_headings(markdown: str) -> str:
    """Every Markdown heading one level deeper (``## x`` -> ``### x``)."""
    return re.sub(r"^(#+) ", r"#\1 ", markdown, flags=re.MULTILINE)


def section(reports: Path) -> str:
    """The README block (from :data:`START` up to, not including, :data:`END`) for the reports in ``reports``."""
    parts = [START, INTRO]
    for target in TARGETS:
        report = shift_headings((reports / target / "report.md").read_text())
        report = re.sub(r"!\[([^\]]*)\]\(([^)/]+)\)", rf"![\1]({LINK_ROOT}/{target}/\2)", report)
        parts.append(report)
    return "\n".join(parts) + "\n"


def update(readme: Path, reports: Path) -> bool:
    """Rewrite ``readme``'s reproduction block from ``reports``; whether it changed (False: no block there)."""
    text = readme.read_text()
    if START not in text:
        return False
    start, end = text.index(START), text.index(END)
    new = text[:start] + section(reports) + text[end:]
    if new != text:
        atomic_write_text(readme, new)
    return new != text


def main() -> int:
    root = Path.cwd()
    changed = update(root / "README.md", root / LINK_ROOT)
    sys.stderr.write(f"README.md {'updated' if changed else 'already up to date'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
