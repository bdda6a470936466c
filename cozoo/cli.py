"""The ``cozoo`` command line. Each feature module contributes its sub-commands via ``add_commands``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Modules that define ``add_commands(subparsers)``; each registers one or more sub-commands.
_COMMAND_MODULES = (
    "cozoo.commands.models",
    "cozoo.weights.commands",
    "cozoo.commands.flops",
    "cozoo.commands.evaluate",
    "cozoo.commands.stream",
    "cozoo.commands.finetune",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cozoo", description="Pretrained video classifiers and their continual (frame-by-frame) "
        "counterparts: models, weights, FLOPs, evaluation, streaming and fine-tuning.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (stays open: the interpreter flushes it at exit)
        return 0
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        print(f"cozoo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
