"""``stochdef crosscheck``: run the cross-check, print its table, write JSON + Markdown, exit 1 on disagreement."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    import torch

    from ..crosscheck.models import MODELS

    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        choices=("cpu", "cuda"),
        help="torch device (cuda when available)",
    )
    parser.add_argument("--quick", action="store_true", help="the CI-sized run (digits only, fewer examples)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the models' training and the attacks")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), help="override the model list (default: all)")
    parser.add_argument("--out", type=Path, default=Path("crosscheck-results"), help="folder for JSON + Markdown")


def main(args: argparse.Namespace) -> int:
    from .. import crosscheck
    from ..crosscheck.report import format_table

    if not args.verbose:  # per-epoch training lines would drown the table
        logging.getLogger("stochdef.defenses.training").setLevel(logging.WARNING)
    report = crosscheck.run(device=args.device, quick=args.quick, seed=args.seed, names=args.models, progress=True)
    print(format_table(report))
    json_path, md_path = crosscheck.save(report, args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0 if report["passed"] else 1
