"""The `concept-diffusion` command.

Each subcommand lives in its own module of this package and exposes `register(subparsers)`,
which adds its parser and sets `func`, the function that runs it (and `takes_flags=True` when it
parses its own flags, in `args.flags`). Heavy imports happen inside those functions, so `--help`
answers at once. A new subcommand is a new module plus its name in `SUBCOMMAND_MODULES`.
"""

import argparse
import sys
from importlib import import_module

from concept_diffusion import __version__

# Module names, in the order `--help` lists them.
SUBCOMMAND_MODULES = ["quickstart", "train", "data", "evaluate", "edit", "attention", "sample", "hub"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="concept-diffusion",
        description="EncDiff concept tokens: train, evaluate, edit and share disentangled diffusion models.",
    )
    parser.add_argument("--version", action="version", version=f"concept-diffusion {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        import_module(f"concept_diffusion.cli.{name}").register(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, flags = parser.parse_known_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 1
    # Subcommands whose flags depend on their own arguments (train: the preset) parse them themselves.
    if getattr(args, "takes_flags", False):
        args.flags = flags
    elif flags:
        parser.error(f"unrecognized arguments: {' '.join(flags)}")
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError) as error:
        print(f"concept-diffusion {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
