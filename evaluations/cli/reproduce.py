"""``stochdef reproduce TARGET``: re-run a paper's headline table on our data, the paper's numbers beside ours."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    import torch

    from .. import reproduce

    parser.add_argument(
        "targets",
        nargs="+",
        choices=sorted(reproduce.TARGETS),
        metavar="TARGET",
        help="; ".join(f"{k}: {v}" for k, v in reproduce.TARGETS.items()),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: reduced size (minutes; what the tests run), no paper comparison",
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device (cuda when available)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the attacks (and of any training)")
    parser.add_argument(
        "--out", type=Path, default=Path("stochdef-results") / "reproduce", help="folder; one sub-folder per target"
    )


def main(args: argparse.Namespace) -> int:
    from .. import reproduce

    for target in args.targets:
        result = reproduce.run(target, quick=args.quick, device=args.device, seed=args.seed, out=args.out / target)
        print(result.text())
        print(f"\n({target}: {result.seconds:.0f} s; wrote {args.out / target / 'report.md'})\n")
    return 0
