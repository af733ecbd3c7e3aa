"""``stochdef bench TARGET``: run a benchmark, print its table, write its JSON."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    import torch

    from .. import bench

    parser.add_argument(
        "targets",
        nargs="+",
        choices=sorted(bench.TARGETS),
        metavar="TARGET",
        help=f"one or more of: {', '.join(sorted(bench.TARGETS))}",
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device (cuda when available)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed repetitions, median reported (default: 7; evaluate, distributed: 1)",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke runs)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="folder or .json file")


def main(args: argparse.Namespace) -> int:
    from .. import bench

    if args.repeat is not None and args.repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {args.repeat}")
    for name in args.targets:
        result = bench.run(name, device=args.device, repeat=args.repeat, quick=args.quick)
        print(bench.format_result(result))
        print(f"  wrote {bench.save(result, args.out)}")
    return 0
