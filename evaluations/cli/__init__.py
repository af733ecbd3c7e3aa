"""The ``stochdef`` command line: one subcommand per job; each module adds its own arguments."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence

# subcommand -> (module under stochdef.evaluations.cli, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("evaluate", "the main job: every defense x library x attack, naive and EoT; report and plots"),
    "reproduce": ("reproduce", "re-run a paper's headline table on our data, the paper's numbers beside ours"),
    "demo": ("demo", "wrap a randomized MNIST model and attack it through Foolbox, ART and torchattacks"),
    "train": ("train", "train a defense from the zoo and save its checkpoint"),
    "bench": ("bench", "run a benchmark: print medians and ratios, write JSON"),
    "crosscheck": (
        "crosscheck",
        "in-house attacks vs Foolbox, ART, torchattacks, advertorch; table + JSON + Markdown",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stochdef", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(f"stochdef.evaluations.cli.{module}").add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stochdef`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.captureWarnings(True)  # indicator warnings go to the log, one line each
    warnings.formatwarning = _one_line
    if not args.verbose:  # the attack libraries log every call at INFO
        for name in ("art", "foolbox", "torchattacks"):
            logging.getLogger(name).setLevel(logging.WARNING)
    module = importlib.import_module(f"stochdef.evaluations.cli.{args._module}")
    try:
        return int(module.main(args) or 0)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"stochdef {args.command}: error: {err}", file=sys.stderr)
        return 2


def _one_line(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    return f"{category.__name__}: {message}"


if __name__ == "__main__":
    raise SystemExit(main())
