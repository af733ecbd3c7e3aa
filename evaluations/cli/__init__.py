"""The ``stochdef`` command line: one subcommand per job; each module adds its own arguments.

The top-level parser lists the subcommands from the static table below without importing their modules
(which import torch and the attack libraries): ``stochdef --help`` and ``stochdef --version`` stay fast.
Only the chosen subcommand's module is imported, to add its arguments and run it. The global options
(``-v``, ``--version``) are accepted before and after the subcommand.

Every error the user can fix (a bad option, a bad value, a bad file, a folder in use) is one line on stderr,
``stochdef CMD: error: ...``, and exit status 2; Ctrl-C prints where the run stopped (exit status 130), never
a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

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
    "verify": ("verify", "recompute a sample of a results folder's cells; say which agree with the record"),
}
DESCRIPTION = "Randomized adversarial defenses attacked honestly (EoT) through Foolbox, ART and torchattacks."
# Options that end the parse before any subcommand is read (the top-level parser answers them itself).
_ANSWERED_AT_TOP = frozenset({"-h", "--help", "--version"})


def version() -> str:
    """The installed distribution's version (``unknown`` when stochdef runs from a checkout not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as distribution_version

    try:
        return distribution_version("stochdef")
    except PackageNotFoundError:
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``: print ``stochdef X.Y.Z`` and exit; the metadata is read only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version and exit")

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(f"stochdef {version()}")
        parser.exit()


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, a tuple written as the comma-separated list it is typed as;
    flags (``store_true``), required positionals and helps that already state a default are left as they are."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or action.nargs == 0 or default in (None, argparse.SUPPRESS):
            return text
        if isinstance(default, (tuple, list)):
            default = ",".join(map(str, default))
        return f"{text} (default: {str(default).replace('%', '%%')})"


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every position accepts. After the subcommand their default is SUPPRESS, so that a
    subcommand which was not given ``-v`` leaves the top-level value as it is instead of resetting it."""
    group = parser.add_argument_group("global options") if not top else parser
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="log debug messages",
    )
    group.add_argument("--version", action=_VersionAction)


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: the first word that is not an option (global options take no value);
    None when there is none or the top level answers first (``--help``, ``--version``)."""
    for arg in argv:
        if arg in _ANSWERED_AT_TOP or arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line (``stochdef CMD: error: ...``, exit 2) without the usage.
    A value that starts like a negative number is a value, as written: ``--bounds -1,1``, ``--eps -8/255``
    (argparse's own rule takes only ``-1`` or ``-0.5``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\.?\d[\d.,/eE+-]*$")

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def one_line(text: object) -> str:
    """``text`` on one line: its lines joined with ``; ``."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of ``command`` only (its module is imported); None imports none."""
    parser = Parser(prog="stochdef", description=DESCRIPTION)
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        subparser = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        subparser.set_defaults(_module=module)
        if name == command:
            importlib.import_module(f"stochdef.evaluations.cli.{module}").add_arguments(subparser)
            _add_global_options(subparser, top=False)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line, importing only the module of the subcommand it names."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return build_parser(command_of(argv)).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stochdef`` console script."""
    args = parse_args(argv)
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
    from tqdm.contrib.logging import logging_redirect_tqdm  # log lines above the progress bars, not through them

    try:
        module = importlib.import_module(f"stochdef.evaluations.cli.{args._module}")
        with logging_redirect_tqdm():
            return int(module.main(args) or 0)
    except KeyboardInterrupt as err:
        print(f"stochdef {args.command}: {one_line(err) or 'interrupted'}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and not _user_error(err):
            raise
        print(f"stochdef {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2


def _user_error(err: RuntimeError) -> bool:
    """A ``RuntimeError`` the user can fix: the output file is in use by another run."""
    from stochdef.defenses.files import FileInUseError

    return isinstance(err, FileInUseError)


def _one_line(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    return f"{category.__name__}: {message}"


if __name__ == "__main__":
    raise SystemExit(main())
