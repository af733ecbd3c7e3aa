"""Plots readable at one defense and at twelve (issue 27): every title, legend and label lies inside the figure,
and no two figure-level texts overlap (the title, the legend, the panels' titles)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stochdef.evaluations.evaluate import AttackCell, CleanCell, EvalConfig, IndicatorCell
from stochdef.evaluations.evaluate.outputs import plots
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
        if layout:
            fig.tight_layout()
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and a.get_visible()) if t.get_text()]
        for text in texts:
            extent = text.get_window_extent(renderer)
            inside = extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1 and extent.y0 >= box.y0 - 1
            assert inside and extent.y1 <= box.y1 + 1, f"{path.name}: {text.get_text()!r} leaves the figure"
        legends = [lg.get_window_extent(renderer) for lg in fig.legends]
        if fig._suptitle is not None and legends:
            assert not fig._suptitle.get_window_extent(renderer).overlaps(legends[0]), f"{path.name}: title on legend"
        checked.append(path.name)
        return real(fig, path, layout=False)

    monkeypatch.setattr(plots, "save_figure", check)
    plots.all_plots(store, c, tmp_path)
    assert {"accuracy_vs_eps.png", "calibration.png", "indicators.png"} <= set(checked)
