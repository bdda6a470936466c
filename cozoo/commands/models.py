"""``cozoo models [PATTERN]`` and ``cozoo info NAME``: what the registry holds."""

from __future__ import annotations

import argparse
import json
import sys

from cozoo.factory import get_config, list_models, model_info


def _list(args: argparse.Namespace) -> int:
    pretrained = {"yes": True, "no": False, "any": None}[args.pretrained]
    names = list_models(args.pattern, pretrained=pretrained)
    if not names and not any(c in args.pattern for c in "*?["):  # a plain word: names containing it
        names = list_models(f"*{args.pattern}*", pretrained=pretrained)
    if not names:
        print(f"cozoo models: no model matches {args.pattern!r}"
              + ("" if pretrained is None else f" with --pretrained {args.pretrained}"), file=sys.stderr)
        return 1
    for name in names:
        config = get_config(name)
        kind = f"continual from {config.source}" if config.source else "regular"
        print(f"{name:22s} {config.frames:3d} frames  crop {config.test_crop:3d}  {kind}")
    return 0


def _info(args: argparse.Namespace) -> int:
    print(json.dumps(model_info(args.name), indent=2, default=str))
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    listing = subparsers.add_parser("models", help="list registered models (wildcards allowed)")
    listing.add_argument("pattern", nargs="?", default="*",
                         help="shell-style wildcard, e.g. '*x3d*' (a plain word matches names containing it)")
    listing.add_argument("--pretrained", choices=("yes", "no", "any"), default="any",
                         help="only models with (yes) or without (no) a published checkpoint")
    listing.set_defaults(handler=_list)
    info = subparsers.add_parser("info", help="config and published figures of one model")
    info.add_argument("name")
    info.set_defaults(handler=_info)
