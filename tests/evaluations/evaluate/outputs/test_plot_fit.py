"""Plots readable at one defense and at twelve (issue 27): every title, legend and label lies inside the figure,
and no two figure-level texts overlap (the title, the legend, the panels' titles). The ``--converge`` plot of a
tiny run draws its records and fits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from torch import nn

from stochdef.evaluations.evaluate import AttackCell, CleanCell, EvalConfig, IndicatorCell, evaluate
from stochdef.evaluations.evaluate.api import write_outputs
from stochdef.evaluations.evaluate.outputs import convergence_plot, plots
from stochdef.evaluations.evaluate.outputs.worst_case import summary
from stochdef.evaluations.evaluate.store.budgets import FILE, RULE
from stochdef.evaluations.evaluate.store.results import ResultsFile
from stochdef.evaluations.stats import wilson_interval

BINS = {"count": [0] * 9 + [20], "correct": [0.0] * 9 + [16.0], "confidence": [0.0] * 9 + [19.0], "output": "logits"}


def _store(path: Path, defenses: tuple[str, ...]) -> tuple[ResultsFile, EvalConfig]:
    c = EvalConfig(defenses=defenses, attacks=("fgsm", "pgd"), libraries=("inhouse", "art"), eps=(0.1, 0.2),
                   samples=(1, 4), n=20)  # fmt: skip

    def acc(hits: int) -> dict[str, Any]:
        ci = list(wilson_interval(hits, c.n))
        return {"acc_ensemble": hits / c.n, "acc_ensemble_ci": ci, "acc_single": hits / c.n, "acc_single_ci": ci}

    store = ResultsFile(path / "results.jsonl")
    for k, d in enumerate(defenses):
        store.add({"key": CleanCell.of(c, d).key, "kind": "clean", "defense": d, "random": True, **acc(18)})
        for attack in c.attacks:
            for eps in c.eps:
                for samples in c.samples:
                    for lib in c.libraries:
                        key = AttackCell.of(c, d, lib, c.attack(attack, eps, samples)).key  # type: ignore[arg-type]
                        store.add({"key": key, "kind": "attack", "calibration": BINS, **acc(10 - k % 5)})
        names = ("randomized", "zero_gradients", "accuracy_monotone_in_eps")
        indicators = [{"name": name, "source": "s", "fired": k % 2 == 0, "value": 0.5, "threshold": 0.1,
                       "detail": "d"} for name in names]  # fmt: skip
        store.add({"key": IndicatorCell.of(c, d).key, "kind": "indicators", "defense": d, "indicators": indicators})
    return store, c


@pytest.mark.parametrize("count", [1, 12])
def test_every_text_fits_inside_its_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    defenses = ("owndefs.nets:build",) if count == 1 else tuple(f"defense-number-{i}" for i in range(count))
    store, c = _store(tmp_path, defenses)
    checked: list[str] = []
    real = plots.save_figure

    def check(fig: Any, path: Path, *, layout: bool = True) -> str:
        assert_fits(fig, path.name, layout=layout)
        checked.append(path.name)
        return real(fig, path, layout=False)

    monkeypatch.setattr(plots, "save_figure", check)
    monkeypatch.setattr(convergence_plot, "save_figure", check)
    _budgets(tmp_path, defenses)
    plots.all_plots(store, c, tmp_path)
    assert {"accuracy_vs_eps.png", "calibration.png", "indicators.png", "convergence.png"} <= set(checked)


def assert_fits(fig: Any, name: str, *, layout: bool = True) -> None:
    """Every visible text of ``fig`` lies inside it, and its title does not overlap its legend."""
    if layout:
        fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and a.get_visible()) if t.get_text()]
    for text in texts:
        extent = text.get_window_extent(renderer)
        inside = extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1 and extent.y0 >= box.y0 - 1
        assert inside and extent.y1 <= box.y1 + 1, f"{name}: {text.get_text()!r} leaves the figure"
    legends = [lg.get_window_extent(renderer) for lg in fig.legends]
    if fig._suptitle is not None and legends:
        assert not fig._suptitle.get_window_extent(renderer).overlaps(legends[0]), f"{name}: title on legend"


def _budgets(out: Path, defenses: tuple[str, ...]) -> None:
    """A ``budgets.json`` with one curve per defense, converged on every other one."""
    curve = [{"steps": 10 * f, "restarts": f, "robust_accuracy": 0.5 - 0.05 * k, "half_width": 0.1}
             for k, f in enumerate((1, 2, 4, 8))]  # fmt: skip
    entries = {d: {"attack": "apgd-ce/torchattacks", "samples": 4, "curve": curve[: 2 + k % 3],
                   "converged": k % 2 == 0} for k, d in enumerate(defenses)}  # fmt: skip
    data = {"rule": RULE, "eps": 0.2, "cap": 8, "mode": "all", "defenses": entries}
    (out / FILE).write_text(json.dumps(data))


def test_the_convergence_plot_of_a_tiny_run_draws_its_records_and_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits, plain_digits_mlp: nn.Module
) -> None:  # type: ignore[no-untyped-def]
    x, y = digits.x_test[:40], digits.y_test[:40]
    config = EvalConfig(
        dataset="digits", defenses=("plain",), attacks=("pgd",), libraries=("inhouse",), eps=(0.1,), samples=(1,),
        n=40, steps=1, judge_samples=1, indicators=False, transfer=False, source="t", converge="all",
    )  # fmt: skip
    drawn: list[Any] = []
    real = convergence_plot.save_figure

    def keep(fig: Any, path: Path, *, layout: bool = True) -> str:
        assert_fits(fig, path.name, layout=layout)
        drawn.append(fig.axes[0])
        return real(fig, path, layout=False)

    monkeypatch.setattr(convergence_plot, "save_figure", keep)
    done = evaluate(config, out=tmp_path, models={"plain": plain_digits_mlp}, x=x, y=y, progress=False)
    assert done.store is not None
    names = write_outputs(done.store, done.config, tmp_path)
    assert "convergence.png" in names and (tmp_path / "convergence.png").stat().st_size > 0
    entry = json.loads((tmp_path / FILE).read_text())["defenses"]["plain"]
    line = drawn[0].lines[0]  # the errorbar's data line
    doubled = sorted(r["steps"] for r in done.store if r["kind"] == "attack" and r["steps"] > 1)
    assert list(line.get_xdata()) == [1, *doubled] == [p["steps"] for p in entry["curve"]]
    assert list(line.get_ydata()) == [p["robust_accuracy"] for p in entry["curve"]]
    worst = summary(done.store, done.config, "plain", 0.1)
    assert worst is not None and line.get_ydata()[-1] == pytest.approx(worst["robust_accuracy"])
    cap = [ln for ln in drawn[0].lines if ln.get_linestyle() == "--"]
    assert [ln.get_xdata()[0] for ln in cap] == [8]  # the cap: 8 x the run's 1 step
    report = (tmp_path / "report.md").read_text()
    assert "![convergence.png](convergence.png)" in report and "[convergence.png](convergence.png)" in report
    assert json.loads((tmp_path / "model-card.json").read_text())["budget"]["plot"] == "convergence.png"
