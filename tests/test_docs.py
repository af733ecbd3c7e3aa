"""The documentation site: its generated pages, its executed examples, and the built site in a real browser.

The page generators (``docs/_ext/pages.py``) are checked without a build. The browser test needs a built
site (``sphinx-build -W --keep-going -b html docs docs/_build/html``, or ``tox -e docs``), Playwright for
Python (the ``docs`` extra) and Debian's ``chromium`` (a browser build cannot be downloaded here, so
Playwright drives that one through ``executable_path``); it skips, saying which is missing, otherwise.
``.ci/run`` installs all three and runs this file again after the build.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "docs" / "_build" / "html"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import pages  # noqa: E402 (docs/_ext is not a package)


def test_api_pages_list_exactly_each_packages_all() -> None:
    import stochdef.adapters
    import stochdef.defenses
    import stochdef.evaluations

    for package in (stochdef.adapters, stochdef.defenses, stochdef.evaluations):
        text = pages.api_page(package.__name__)
        listed = [line.strip() for line in text.split(":nosignatures:\n\n", 1)[1].splitlines() if line.strip()]
        assert listed == list(package.__all__)
        assert f".. automodule:: {package.__name__}\n" in text


def test_api_page_refuses_a_package_without_all() -> None:
    with pytest.raises(ValueError, match="stochdef.evaluations.cli has no __all__"):
        pages.api_page("stochdef.evaluations.cli")


def test_result_pages_quote_the_committed_reports() -> None:
    reports = ROOT / "evaluations" / "reports"
    evaluate = pages.evaluate_page(ROOT)
    assert (reports / "evaluate" / "reading.txt").read_text().strip() in evaluate
    assert (reports / "evaluate" / "console.txt").read_text().rstrip("\n") in evaluate
    reproductions = pages.reproductions_page(ROOT)
    for target in ("sdr", "sap", "advbnn", "mwd", "noise"):
        report = (reports / "reproduce" / target / "report.md").read_text()
        reading = report.split("**Reading.**", 1)[1].split("\n", 1)[0]
        assert reading in reproductions
    for figure in sorted((reports / "reproduce").glob("*/*.png")):
        link = f"]({pages.UP}{figure.relative_to(ROOT).as_posix()})"
        assert link in reproductions  # the page is docs/results/generated/reproductions.md: three folders down
    assert reproductions.startswith("# Paper reproductions")


def test_benchmark_page_has_every_target_of_every_json() -> None:
    text = pages.benchmarks_page(ROOT)
    files = sorted((ROOT / "evaluations" / "reports").glob("bench-*-*.json"))
    assert files
    for path in files:
        data = json.loads(path.read_text())
        for label, target in data["targets"].items():
            met = "yes" if target["met"] else "**no**"
            row = f"| {label} | {target['value']:g} | {target['op']} {target['threshold']:g} | {met} |"
            assert row in text, row


def test_readme_results_table_is_what_the_default_run_printed() -> None:
    readme = (ROOT / "README.md").read_text()
    console = (ROOT / "evaluations" / "reports" / "evaluate" / "console.txt").read_text()
    block = readme.split("<!-- evaluate results -->", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    assert block == console, "the README quotes evaluations/reports/evaluate/console.txt verbatim"


def test_zoo_table_has_every_shipped_checkpoint() -> None:
    text = pages.zoo_table(ROOT)
    sidecars = sorted((ROOT / "defenses" / "checkpoints").glob("*--*.json"))
    assert len(text.splitlines()) == 2 + len(sidecars)
    adv_bnn = json.loads((ROOT / "defenses" / "checkpoints" / "adv-bnn--mnist5k.json").read_text())
    assert f"| `adv-bnn` | mnist5k | {adv_bnn['paper']} | {100 * adv_bnn['test_accuracy_single_draw']:.1f} |" in text


@pytest.mark.skipif(importlib.util.find_spec("sphinx") is None, reason="Sphinx not installed (the docs extra)")
@pytest.mark.parametrize(("code", "message"), [("raise SystemExit(3)", "failed (exit 3)"), ("1/0", "ZeroDivision")])
def test_a_failing_example_fails_the_build(tmp_path: Path, code: str, message: str) -> None:
    (tmp_path / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'docs' / '_ext')!r})\nextensions = ['myst_parser']\n"
        "def setup(app):\n    from stochdef_docs import RunBlock\n    app.add_directive('runblock', RunBlock)\n"
    )
    (tmp_path / "index.md").write_text(f"# t\n\n```{{runblock}}\nprint('ran')\n{code}\n```\n")
    command = [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(tmp_path), str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and message in done.stderr and "index.md, line 3" in done.stderr
    (tmp_path / "index.md").write_text("# t\n\n```{runblock}\nprint('ran' + 'ok')\n```\n")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ranok" in (tmp_path / "out" / "index.html").read_text()  # the output is shown under the code


def _browser():  # type: ignore[no-untyped-def]
    if not (SITE / "quickstart.html").exists():
        pytest.skip(f"no built site in {SITE}: build it with sphinx-build -W -b html docs docs/_build/html")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("Playwright for Python not installed (pip install -e '.[docs]')")
    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium; a browser cannot be downloaded here)")
    from playwright.sync_api import sync_playwright

    return sync_playwright()


def test_quick_start_leads_to_the_api_page_of_to_art() -> None:
    with _browser() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto((SITE / "index.html").as_uri())
            page.locator("a:visible", has_text="Quick start").first.click()
            page.wait_for_load_state()
            assert page.url.endswith("/quickstart.html")
            # The quick start's own example ran when the site was built: its output is on the page.
            assert "worst case at eps 0.1" in page.locator("div.runblock-output").first.inner_text()
            page.locator("article a[href*='stochdef.adapters.to_art.html']:visible").first.click()
            page.wait_for_load_state()
            assert page.url.split("#")[0].endswith("/api/generated/stochdef.adapters.to_art.html")
            signature = page.locator("dt.sig#stochdef\\.adapters\\.to_art")
            assert signature.is_visible() and "to_art" in signature.inner_text()
            example = page.locator("div.doctest").first
            assert example.is_visible()
            assert ">>> clf = to_art(net, input_shape=(4,), nb_classes=3" in example.inner_text()
            table = page.locator("dl.field-list").first
            assert table.is_visible()
            assert (table.locator("dt").first.text_content() or "").startswith("Parameters")  # shown upper-case
            text = table.inner_text()
            for name in ("model", "input_shape", "nb_classes", "clip_values", "samples", "output", "max_batch"):
                assert table.locator("li strong", has_text=name).count() >= 1, name
            assert "the draws every prediction and gradient averages" in text
        finally:
            browser.close()
