"""``stochdef evaluate``: the main job. Prints the table, writes results.jsonl, report.md and plots."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from stochdef.defenses.data import DATASETS

from ..evaluate import DEFAULT_DEFENSES, EvalConfig
from ..libraries import EVAL_ATTACKS, LIBRARIES, NORMS


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
    parser.add_argument("--eps", type=_list(float), default=default.eps, help="comma-separated radii in --norm")
    parser.add_argument(
        "--samples",
        type=_samples,
        default=default.samples,
        help="comma-separated EoT draws per gradient: 1 is the naive attack, the largest the EoT one; 'auto' "
        "doubles them until the worst case settles (up to --samples-cap)",
    )
    parser.add_argument("--dataset", default=default.dataset, choices=DATASETS, help="embedded data set")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device (cuda when available)"
    )
    parser.add_argument("--out", type=Path, default=Path("stochdef-results"), help="folder for results and report")
    parser.add_argument("--seed", type=int, default=default.seed, help="run seed (each cell's seed derives from it)")
    parser.add_argument(
        "--examples",
        "--n",
        dest="n",
        type=int,
        default=default.n,
        help="test images attacked (--n is an alias; torchrun refuses --n, so spell it --examples there)",
    )
    parser.add_argument("--steps", type=int, default=default.steps, help="PGD steps")
    parser.add_argument(
        "--block",
        type=int,
        default=default.block,
        help="attack each cell's examples in blocks of this many, each seeded on its own, so that torchrun's "
        "ranks can share a long cell (0, the default: the whole batch at once; the numbers depend on it)",
    )
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
    add_own_model_arguments(parser)


def _samples(text: str) -> tuple[int, ...] | str:
    return "auto" if text == "auto" else _list(int)(text)


def _bounds(text: str) -> tuple[float, float]:
    parts = _list(float)(text)  # names a non-number item, as every list option does
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"bounds must be LOW,HIGH, got {text!r}")
    return parts[0], parts[1]


def add_own_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Your own model and data, the threat model, and the stronger attacks' settings."""
    default = EvalConfig()
    parser.add_argument(
        "--model",
        metavar="MODULE:ATTR",
        help="your own model: an nn.Module, or a zero-argument callable returning one, importable from the "
        "current directory (replaces --defense)",
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="a state dict for --model or the one --defense (always wins over the zoo's)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="test data: a .pt or .npz holding x (inputs in --bounds) and y (int64 labels); default: the "
        "--dataset test split",
    )
    parser.add_argument("--bounds", type=_bounds, default=default.bounds, help="input range LOW,HIGH")
    parser.add_argument("--norm", default=default.norm, choices=NORMS, help="threat model")
    parser.add_argument(
        "--restarts", type=int, default=default.restarts, help="random restarts of pgd-rs, APGD and Square"
    )
    parser.add_argument("--queries", type=int, default=default.queries, help="Square's query budget per example")
    parser.add_argument("--samples-cap", type=int, default=32, help="the most draws --samples auto tries")


def main(args: argparse.Namespace) -> int:
    from ..evaluate import distributed
    from ..evaluate.api import execute, write_outputs
    from ..evaluate.report import console_table

    config, x, y, models = own_model(args, build_config(args))
    start = time.perf_counter()
    if distributed.launched():  # torchrun with several processes: this rank's cells; rank 0 merges and reports
        if x is not None or models or config.samples_cap:
            raise ValueError(
                "under torchrun, evaluate splits zoo defenses with a fixed --samples list; "
                "--model, --data and --samples auto run in one process"
            )
        merged = distributed.evaluate(config, out=args.out, recompute_stale=args.recompute_stale)
        if merged is None:
            return 0
        store = merged
    else:
        store, config = execute(config, args.out, x=x, y=y, models=models, recompute_stale=args.recompute_stale)
    seconds = time.perf_counter() - start
    plots = write_outputs(store, config, args.out, seconds=seconds)
    print(console_table(store, config))
    print(headline(store, config))
    print(
        f"\nevaluated in {seconds:.1f} s; wrote {args.out / 'results.jsonl'}, {args.out / 'report.md'}, "
        f"{len(plots)} plots and the model card(s)"
    )
    return 0


def headline(store: Any, config: EvalConfig) -> str:
    """The worst case over every attack, per defense, at each eps (the report's headline)."""
    from ..evaluate.worst_case import summary

    lines = ["", "worst case over every attack and library (95% interval):"]
    for d in config.defenses:
        parts = []
        for e in sorted(config.eps):
            s = summary(store, config, d, e)
            parts.append(f"eps {e}: " + ("—" if s is None else "{:.2f} [{:.2f}, {:.2f}]".format(
                s["robust_accuracy"], *s["robust_accuracy_ci"])))  # fmt: skip
        lines.append(f"  {d:<16}" + "   ".join(parts))
    return "\n".join(lines)


def own_model(args: argparse.Namespace, config: EvalConfig) -> tuple[EvalConfig, Any, Any, Any]:
    """``config`` for ``--model`` / ``--data`` / ``--checkpoint``, with the model and tensors they name."""
    import dataclasses

    from ..evaluate.user_model import fingerprint, load_checkpoint, load_data, load_model

    if args.model is None and args.data is None:
        return config, None, None, None
    x = y = None
    parts: list[Any] = []
    if args.data is not None:
        x, y = load_data(args.data, bounds=config.bounds)  # the first --n examples (all, if fewer)
        x, y = x[: args.n].to(config.device), y[: args.n].to(config.device)
        parts += [x, y]
    models = None
    if args.model is not None:
        model = load_model(args.model).to(config.device)
        if args.checkpoint is not None:
            load_checkpoint(model, args.checkpoint)
        models = {args.model: model}
        parts.append(model)
        config = dataclasses.replace(config, defenses=(args.model,), checkpoint=None, transfer=False)
    n = len(x) if x is not None else config.n
    dataset = "custom" if args.data is not None and args.model is not None else config.dataset
    if dataset == "custom" and config.indicators:
        # their transfer check attacks zoo surrogates trained on a zoo data set, not on --data
        logging.getLogger(__name__).warning(
            "the gradient-obfuscation indicators need a zoo data set: not run on --data"
        )
        config = dataclasses.replace(config, indicators=False)
    source = fingerprint(*parts, extra=[args.model or ""])
    return dataclasses.replace(config, n=n, dataset=dataset, source=source), x, y, models


def build_config(args: argparse.Namespace) -> EvalConfig:
    from ..evaluate.api import with_samples

    config = EvalConfig(
        dataset=args.dataset,
        defenses=args.defense,
        attacks=args.attack,
        libraries=args.library,
        eps=args.eps,
        n=args.n,
        steps=args.steps,
        block=args.block,
        judge_samples=args.judge_samples,
        seed=args.seed,
        device=args.device,
        indicators=not args.no_indicators,
        transfer=not args.no_transfer,
        norm=args.norm,
        bounds=args.bounds,
        restarts=args.restarts,
        queries=args.queries,
        checkpoint=None if args.checkpoint is None or args.model else str(args.checkpoint),
        samples=(1,),
    )
    return with_samples(config, args.samples, args.samples_cap)
