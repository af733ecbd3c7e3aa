"""The reproduction section is generated from the committed reports (no hand-typed number or reading).

The documentation builds its page of reproductions from :func:`readme.section` (tests/test_docs.py); a README
that still carries the block must carry the current one.
"""

from __future__ import annotations

from pathlib import Path

from stochdef.evaluations.reproduce import TARGETS, readme

ROOT = Path(__file__).resolve().parents[3]


def test_a_readme_block_is_the_committed_reports() -> None:
    text = (ROOT / "README.md").read_text()
    if readme.START in text:  # the short README links the docs' page instead of carrying the block
        block = text[text.index(readme.START) : text.index(readme.END)]
        assert block == readme.section(ROOT / readme.LINK_ROOT), "run: python -m stochdef.evaluations.reproduce.readme"


def test_update_rewrites_a_stale_block_and_leaves_a_readme_without_one(tmp_path: Path) -> None:
    for target in TARGETS:
        (tmp_path / target).mkdir()
        (tmp_path / target / "report.md").write_text(f"## {target}\n\n**Reading.** r-{target}\n")
    stale = tmp_path / "stale.md"
    stale.write_text(f"# x\n\n{readme.START}\nold numbers\n{readme.END}\n## after\n")
    assert readme.update(stale, tmp_path) is True
    assert stale.read_text() == f"# x\n\n{readme.section(tmp_path)}{readme.END}\n## after\n"
    assert readme.update(stale, tmp_path) is False  # already current
    short = tmp_path / "short.md"
    short.write_text("# x\n\nno block\n")
    assert readme.update(short, tmp_path) is False and short.read_text() == "# x\n\nno block\n"


def test_section_holds_every_reading_and_figure(tmp_path: Path) -> None:
    for target in TARGETS:
        (tmp_path / target).mkdir()
        (tmp_path / target / "report.md").write_text(f"## {target}\n\n**Reading.** r-{target}\n\n![f.png](f.png)\n")
    out = readme.section(tmp_path)
    for target in TARGETS:
        assert f"### {target}\n" in out and f"r-{target}" in out
        assert f"![f.png]({readme.LINK_ROOT}/{target}/f.png)" in out
    assert out.startswith(readme.START) and readme.END not in out
