"""``stochdef train NAME``: train a zoo defense with the project's own trainer and save its checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stochdef.defenses.data import DATASETS

    parser.add_argument("names", nargs="*", metavar="NAME", help="defenses to train (none: list them)")
    parser.add_argument("--dataset", default="mnist5k", choices=DATASETS, help="embedded data set")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the shipped checkpoints used 0)")
    parser.add_argument("--quick", action="store_true", help="a few epochs only (smoke runs and tests)")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--out", type=Path, default=None, help="folder for the checkpoint (default: the cache)")
    parser.add_argument(
        "--convert",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="re-save checkpoints as tensors and plain data only (weights bit for bit), instead of training",
    )


def main(args: argparse.Namespace) -> int:
    from stochdef.defenses import zoo

    if args.convert:
        for path in args.convert:
            meta = zoo.convert(path)
            print(f"{path}: {meta['name']} on {meta['dataset']}, weights sha256 {meta['weights_sha256'][:16]}")
        return 0
    if not args.names:
        for name, spec in zoo.registry().items():
            print(f"{name:<22} {spec.family:<10} {spec.description}")
        return 0
    settings = zoo.TrainSettings(seed=args.seed, quick=args.quick, device=args.device)
    for name in args.names:
        _, meta = zoo.train(name, dataset=args.dataset, settings=settings, out_dir=args.out)
        print(
            f"{name} on {args.dataset}: held-out accuracy (one draw) {meta['test_accuracy_single_draw']:.4f}"
            f" in {meta['train_seconds']} s"
        )
    return 0
