"""The one Markdown table writer: shape, escaping, and a clear error on a ragged row."""

from __future__ import annotations

import pytest

from stochdef.evaluations.tables import markdown_table


def test_table_shape_and_escaping() -> None:
    lines = markdown_table(["a", "b|c"], [[1, "x|y"], [None, "two\nlines"]])
    assert lines == ["| a | b\\|c |", "| --- | --- |", "| 1 | x\\|y |", "| None | two lines |"]
    # every line has as many unescaped cell separators as the header
    assert {line.replace("\\|", "").count("|") for line in lines} == {3}


def test_ragged_row_is_refused() -> None:
    with pytest.raises(ValueError, match="a row has 1 cells, the header 2"):
        markdown_table(["a", "b"], [["only one"]])
