"""``stochdef evaluate``: the main job. Prints the table, writes results.jsonl, report.md and plots."""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from stochdef.defenses.data import DATASETS

from .. import libraries
from ..evaluate.config import DEFAULT_DEFENSES, DEFAULT_SAMPLES_CAP, FIELDS, SETTINGS, EvalConfig, build_config


def number(text: str) -> float:
    """A number as written: ``0.03``, ``1e-3`` or a fraction ``8/255``.

    >>> number("8/255") == 8 / 255, number("-1"), number("2e-1")
    (True, -1.0, 0.2)
    """
    if "/" in text:
        top, _, bottom = text.partition("/")
        value = float(top) / float(bottom)  # a ValueError (not a number) or ZeroDivisionError names the item
        return value
    return float(text)


def _list(kind: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    """A parser of comma-separated ``kind`` values whose error names the item that is not one."""
    what = {number: "a number", int: "an integer"}.get(kind, getattr(kind, "__name__", "a value"))

    def parse(text: str) -> tuple[Any, ...]:
        values = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                values.append(kind(part))
            except (ValueError, ZeroDivisionError):
                raise argparse.ArgumentTypeError(f"{part!r} is not {what} (in {text!r})") from None
        return tuple(values)

    parse.__name__ = f"comma-separated {getattr(kind, '__name__', 'value')} list"
    return parse


def _argparse_options() -> dict[str, dict[str, Any]]:
    """argparse's settings of each option of :data:`SETTINGS` (the names and help texts come from there)."""
    default = EvalConfig()
    return {
        "defenses": {"type": _list(str), "default": DEFAULT_DEFENSES},
        "attacks": {"type": _list(str), "default": default.attacks},
        "libraries": {"type": _list(str), "default": default.libraries},
        "eps": {"type": _list(number), "default": default.eps},
        "samples": {"type": _samples, "default": default.samples},
        "samples_cap": {"type": int, "default": DEFAULT_SAMPLES_CAP},
        "dataset": {"default": default.dataset, "choices": DATASETS},
        "n": {"type": int, "default": default.n},
        "steps": {"type": int, "default": default.steps},
        "block": {"type": int, "default": default.block},
        "judge_samples": {"type": int, "default": default.judge_samples},
        "seed": {"type": int, "default": default.seed},
        "device": {"default": "cuda" if torch.cuda.is_available() else "cpu", "metavar": "DEVICE"},
        "indicators": {"action": "store_false"},
        "transfer": {"action": "store_false"},
        "norm": {"default": default.norm, "metavar": "{" + ",".join(libraries.NORMS) + "}"},
        "bounds": {"type": _bounds, "default": default.bounds},
        "restarts": {"type": int, "default": default.restarts},
        "queries": {"type": int, "default": default.queries},
        "converge": {"choices": ("off", "auto", "all"), "default": default.converge},
        "checkpoint": {"type": Path},
        "out": {"type": Path, "default": Path("stochdef-results")},
        "recompute_stale": {"action": "store_true"},
        "model": {"metavar": "MODULE:ATTR"},
        "data": {"type": Path},
    }


def attack_help() -> str:
    """Each attack ``stochdef evaluate`` runs, with the libraries that run it and its expected cost (forward-pass
    equivalents per image and EoT draw, at the default budgets), from the attacks' registry."""
    default = EvalConfig()
    parts = []
    for name in libraries.names(evaluate=True):
        attack = default.attack(name, 0.1, 1)
        if isinstance(attack, str):
            continue
        runs = [lib for lib in libraries.LIBRARIES if libraries.unsupported(lib, attack) is None]
        parts.append(f"{name} ({', '.join(runs)}; ~{attack.passes(10):.0f} passes)")
    return "; ".join(parts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options = _argparse_options()
    for setting in SETTINGS:
        extra = dict(options[setting.name])
        text = setting.help
        if setting.name == "attacks":
            text += ": " + attack_help()
        elif setting.name == "libraries":
            text += f", from {','.join(libraries.LIBRARIES)}"
        parser.add_argument(*setting.flags, dest=setting.name, help=text.replace("%", "%%"), **extra)


def _samples(text: str) -> tuple[int, ...] | str:
    return "auto" if text == "auto" else _list(int)(text)


def _bounds(text: str) -> tuple[float, float]:
    parts = _list(number)(text)  # names a non-number item, as every list option does
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"bounds must be LOW,HIGH, got {text!r}")
    return parts[0], parts[1]


def main(args: argparse.Namespace) -> int:
    from ..evaluate.api import evaluate, write_outputs
    from ..evaluate.outputs.report import console_table

    config, x, y, models = own_model(args, build_from_args(args))
    start = time.perf_counter()
    done = evaluate(config, out=args.out, models=models, x=x, y=y, recompute_stale=args.recompute_stale)
    if done.store is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    store, config = done.store, done.config
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
    from ..evaluate.outputs.worst_case import summary

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
    """``config`` for ``--model`` / ``--data`` / ``--checkpoint``, with the models and tensors they name:
    ``(config, x, y, models)``."""
    from ..evaluate.config import own_model_config
    from ..evaluate.user_model import fingerprint, load_checkpoint, load_data, load_model

    if args.model is None and args.data is None:
        return config, None, None, None
    if args.model is not None and tuple(args.defenses) != DEFAULT_DEFENSES:
        raise ValueError(
            f"--model replaces --defense: pass one or the other (got --defense {','.join(args.defenses)}); several "
            "--model entries, comma-separated, are evaluated side by side"
        )
    x = y = None
    parts: list[Any] = []
    if args.data is not None:
        x, y = load_data(args.data, bounds=config.bounds)  # the first --n examples (all, if fewer)
        x, y = x[: args.n].to(config.device), y[: args.n].to(config.device)
        parts += [x, y]
    models = None
    if args.model is not None:
        names = [part.strip() for part in args.model.split(",") if part.strip()]
        files = [] if args.checkpoint is None else [p.strip() for p in str(args.checkpoint).split(",")]
        if files and len(files) != len(names):
            raise ValueError(
                f"--checkpoint lists {len(files)} file(s) for {len(names)} --model entries: give one per entry, "
                "comma-separated, in their order"
            )
        models = {}
        for i, name in enumerate(names):
            if name in models:
                raise ValueError(f"--model lists {name!r} twice")
            model = load_model(name).to(config.device)
            if files:
                load_checkpoint(model, files[i])
            models[name] = model
            parts.append(model)
    n = len(x) if x is not None else config.n
    source = fingerprint(*parts, extra=[args.model or ""])
    if args.model is None:  # zoo defenses on --data
        return dataclasses.replace(config, n=n, source=source), x, y, models
    zoo_data = args.data is None
    checkpoint = None if args.checkpoint is None else ",".join(p.strip() for p in str(args.checkpoint).split(","))
    config = own_model_config(config, name=tuple(models or ()), n=n, source=source, zoo_data=zoo_data,
                              checkpoint=checkpoint)  # fmt: skip
    return config, x, y, models


def build_from_args(args: argparse.Namespace) -> EvalConfig:
    """The config of the parsed options: every :data:`SETTINGS` entry that is a config field, through
    :func:`build_config` as ``evaluate_model`` does (``--checkpoint`` with ``--model`` is loaded into the model)."""
    fields = {s.name: getattr(args, s.name) for s in SETTINGS if s.name in FIELDS - {"samples", "samples_cap"}}
    fields["checkpoint"] = None if args.checkpoint is None or args.model else str(args.checkpoint)
    return build_config(samples=args.samples, samples_cap=args.samples_cap, **fields)
