"""The README's reproduction section is generated from the committed reports (no hand-typed number or reading)."""

from __future__ import annotations

from pathlib import Path

from stochdef.evaluations.reproduce import TARGETS, readme

ROOT = Path(__file__).resolve().parents[3]


def test_readme_section_is_the_committed_reports() -> None:
    text = (ROOT / "README.md").read_text()
    block = text[text.index(readme.START) : text.index(readme.END)]
    assert block == readme.section(ROOT / readme.LINK_ROOT), "run: python -m stochdef.evaluations.reproduce.readme"


def test_section_holds_every_reading_and_figure(tmp_path: Path) -> None:
    for target in TARGETS:
        (tmp_path / target).mkdir()
        (tmp_path / target / "report.md").write_text(f"## {target}\n\n**Reading.** r-{target}\n\n![f.png](f.png)\n")
    out = readme.section(tmp_path)
    for target in TARGETS:
        assert f"### {target}\n" in out and f"r-{target}" in out
        assert f"![f.png]({readme.LINK_ROOT}/{target}/f.png)" in out
    assert out.startswith(readme.START) and readme.END not in out
