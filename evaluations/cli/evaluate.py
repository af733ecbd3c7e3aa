"""``stochdef evaluate``: the main job. Prints the table, writes results.jsonl, report.md and plots."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from stochdef.defenses.data import DATASETS

from ..evaluate import DEFAULT_DEFENSES, EvalConfig, evaluate
from ..libraries import EVAL_ATTACKS, LIBRARIES


def _list(kind: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    """A parser of comma-separated ``kind`` values whose error names the item that is not one."""
    what = {float: "a number", int: "an integer"}.get(kind, kind.__name__)  # type: ignore[call-overload]

    def parse(text: str) -> tuple[Any, ...]:
        values = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                values.append(kind(part))
            except ValueError:
                raise argparse.ArgumentTypeError(f"{part!r} is not {what} (in {text!r})") from None
        return tuple(values)

    parse.__name__ = f"comma-separated {kind.__name__} list"
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default = EvalConfig()
    parser.add_argument(
        "--defense",
        type=_list(str),
        default=DEFAULT_DEFENSES,
        help=(
            "comma-separated zoo names (`stochdef train` lists them all; a name without a shipped checkpoint is "
            "trained first, and the run says how long that took when the zoo recorded it); append [psd] to an "
            "MWD net (mwd-256[psd]) to attack it through its pseudogradient"
        ),
    )
    parser.add_argument(
        "--attack", type=_list(str), default=default.attacks, help=f"comma-separated, from {','.join(EVAL_ATTACKS)}"
    )
    parser.add_argument(
        "--library", type=_list(str), default=default.libraries, help=f"comma-separated, from {','.join(LIBRARIES)}"
    )
    parser.add_argument("--eps", type=_list(float), default=default.eps, help="comma-separated L-inf radii")
    parser.add_argument(
        "--samples",
        type=_list(int),
        default=default.samples,
        help="comma-separated EoT draws per gradient: 1 is the naive attack, the largest the EoT one",
    )
    parser.add_argument("--dataset", default=default.dataset, choices=DATASETS, help="embedded data set")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device (cuda when available)"
    )
    parser.add_argument("--out", type=Path, default=Path("stochdef-results"), help="folder for results and report")
    parser.add_argument("--seed", type=int, default=default.seed, help="run seed (each cell's seed derives from it)")
    parser.add_argument("--n", type=int, default=default.n, help="test images attacked")
    parser.add_argument("--steps", type=int, default=default.steps, help="PGD steps")
    parser.add_argument(
        "--judge-samples",
        type=int,
        default=default.judge_samples,
        help="draws in the random defenses' ensemble prediction that judges every cell (cost grows with it)",
    )
    parser.add_argument(
        "--no-indicators",
        action="store_true",
        help="skip the gradient-obfuscation checks (about 30%% of a default run; README)",
    )
    parser.add_argument(
        "--no-transfer", action="store_true", help="skip the transfer matrix (about 5%% of a default run; README)"
    )
    parser.add_argument(
        "--recompute-stale",
        action="store_true",
        help="recompute the cells of --out computed with other weights, library versions, device or CPU capability "
        "(their old records move to results.stale.jsonl); without it such a run is refused",
    )


def main(args: argparse.Namespace) -> int:
    from stochdef.defenses.files import atomic_write_text

    from ..evaluate.plots import all_plots
    from ..evaluate.report import console_table, markdown

    config = EvalConfig(
        dataset=args.dataset,
        defenses=args.defense,
        attacks=args.attack,
        libraries=args.library,
        eps=args.eps,
        samples=args.samples,
        n=args.n,
        steps=args.steps,
        judge_samples=args.judge_samples,
        seed=args.seed,
        device=args.device,
        indicators=not args.no_indicators,
        transfer=not args.no_transfer,
    )
    start = time.perf_counter()
    store = evaluate(config, out=args.out, recompute_stale=args.recompute_stale)
    seconds = time.perf_counter() - start
    plots = all_plots(store, config, args.out)
    atomic_write_text(args.out / "report.md", markdown(store, config, seconds=seconds, plots=plots))
    print(console_table(store, config))
    print(
        f"\nevaluated in {seconds:.1f} s; wrote {args.out / 'results.jsonl'}, {args.out / 'report.md'} and "
        f"{len(plots)} plots"
    )
    return 0
