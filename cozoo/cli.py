"""The ``cozoo`` command line. The parser comes from `cozoo.commands.parsers` (declarations only, no torch),
so ``--help``, ``--version`` and ``cozoo models [--table]`` start in a fraction of a second; a command's
implementation (and torch) is imported when that command runs."""

from __future__ import annotations

import argparse
import os
import select
import sys
import warnings

from cozoo.commands import torch_threads
from cozoo.commands.parsers import COMMANDS
from cozoo.version import __version__

# Functions ``add(subparsers)``; each registers one or more sub-commands.
_COMMANDS = COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cozoo", description="Pretrained video classifiers and their continual (frame-by-frame) "
        "counterparts: models, weights, FLOPs, evaluation, streaming and fine-tuning.")
    parser.add_argument("--version", action="version", version=f"cozoo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides_only = all("=" in e and not e.startswith("-") for e in extra)
    if extra and getattr(args, "extra_overrides", False) and overrides_only:
        args.overrides = [*args.overrides, *extra]  # `finetune CONFIG --resume a=1 b=2`: after an option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    with warnings.catch_warnings():
        warnings.showwarning = _warning_printer(args.command)
        return _run(args)


def _warning_printer(command: str):  # noqa: ANN202 (the signature warnings.showwarning expects)
    """Warnings as one line each, ``cozoo CMD: warning: ...``, rather than Python's source-line format."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        print(f"cozoo {command}: warning: {message}", file=sys.stderr if file is None else file)

    return show


def _run(args: argparse.Namespace) -> int:
    try:
        with torch_threads(args):
            code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        return code
    except BrokenPipeError as err:
        if not _stdout_reader_gone():
            print(f"cozoo {args.command}: error: {err}", file=sys.stderr)
            return 2
        # Output piped into e.g. `head`, which stopped reading: not an error. Point stdout at /dev/null so
        # the interpreter's final flush does not fail too (the recipe of Python's `signal` docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback, the shell's code for SIGINT
        print(f"cozoo {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, OSError, RuntimeError, FloatingPointError) as err:  # e.g. a NaN loss
        print(f"cozoo {args.command}: error: {err}", file=sys.stderr)
        return 2


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reading end is closed."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # not a real file descriptor (e.g. captured output)
        return False


if __name__ == "__main__":
    sys.exit(main())
