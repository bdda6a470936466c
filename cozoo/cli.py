"""The ``cozoo`` command line. Each feature module contributes its sub-commands via ``add_commands``."""

from __future__ import annotations

import argparse
import os
import select
import sys
import warnings

from cozoo.commands import evaluate, finetune, flops, models, stream, weights

# Modules that define ``add_commands(subparsers)``; each registers one or more sub-commands.
_COMMAND_MODULES = (models, weights, flops, evaluate, stream, finetune)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cozoo", description="Pretrained video classifiers and their continual (frame-by-frame) "
        "counterparts: models, weights, FLOPs, evaluation, streaming and fine-tuning.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in _COMMAND_MODULES:
        module.add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
