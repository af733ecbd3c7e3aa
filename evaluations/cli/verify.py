"""``stochdef verify OUT``: recompute a sample of a results folder's cells and say which agree (exit 1 if any does
not). The folder is only read; ``--report FILE`` writes the checks as JSON. See
:mod:`stochdef.evaluations.evaluate.verify`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, metavar="OUT", help="a folder written by stochdef evaluate (read only)")
    parser.add_argument("--cells", type=int, default=8, help="cells to recompute (at least one clean, one attack)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the choice of cells")
    parser.add_argument(
        "--force",
        action="store_true",
        help="recompute even where the recorded provenance (weights, library versions, device, CPU capability, "
        "samplers) differs from this machine's; every cell is then judged by its 95%% interval",
    )
    parser.add_argument("--report", type=Path, default=None, help="write the checks as JSON here (default: none)")


def main(args: argparse.Namespace) -> int:
    from stochdef.defenses.files import atomic_write_text
    from stochdef.evaluations.evaluate.verify import as_json, verify
    from stochdef.evaluations.tables import markdown_table

    if args.report is not None and args.out.resolve() in args.report.resolve().parents:
        raise ValueError(f"--report {args.report}: verify writes nothing into the folder it checks")
    start = time.perf_counter()
    checks, overridden = verify(args.out, cells=args.cells, seed=args.seed, force=args.force)
    seconds = time.perf_counter() - start
    if overridden:
        print(f"provenance differs ({'; '.join(overridden)}): every cell judged by its 95% interval (--force)")
    rows = []
    for c in checks:
        kind = "-" if c.random is None else ("random" if c.random else "deterministic")
        shown = " / ".join(
            f"{c.recorded[name]:.2f} -> {c.recomputed[name]:.2f}" for name in c.recorded if name in c.recomputed
        )
        rows.append((c.label, kind, shown or "-", c.status, c.why))
    columns = ("cell", "defense", "accuracy single / ensemble: recorded -> now", "verdict", "why")
    print("\n".join(markdown_table(columns, rows)))
    bad = [c for c in checks if c.status in ("disagrees", "not reproducible")]
    print(
        f"{len(checks) - len(bad)} of {len(checks)} cells agree or are skipped, {len(bad)} do not "
        f"({seconds:.1f} s)" + "".join(f"\n  {c.status}: {c.key}" for c in bad)
    )
    if args.report is not None:
        atomic_write_text(args.report, json.dumps(as_json(checks, overridden), indent=1) + "\n")
    return 1 if bad else 0
