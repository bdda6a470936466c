"""``cozoo models [PATTERN] [--table]`` and ``cozoo info NAME [--json]``: what the registry holds."""

from __future__ import annotations

import argparse
import json
import sys

from cozoo.factory import get_config, list_models, model_info
from cozoo.zoo import COUNTING, VIDEO_FPS, zoo_rows


def _list(args: argparse.Namespace) -> int:
    pretrained = {"yes": True, "no": False, "any": None}[args.pretrained]
    names = list_models(args.pattern, pretrained=pretrained)
    if not names and not any(c in args.pattern for c in "*?["):  # a plain word: names containing it
        names = list_models(f"*{args.pattern}*", pretrained=pretrained)
    if not names:
        print(f"cozoo models: no model matches {args.pattern!r}"
              + ("" if pretrained is None else f" with --pretrained {args.pretrained}"), file=sys.stderr)
        return 1
    if args.table:
        _table(names)
        return 0
    for name in names:
        config = get_config(name)
        kind = f"continual from {config.source}" if config.source else "regular"
        print(f"{name:22s} {config.frames:3d} frames  crop {config.test_crop:3d}  {kind}")
    return 0


def _cell(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(names: list[str]) -> None:
    """The zoo table from the stored figures (`cozoo.zoo`): instant, no model is built."""
    rows = [row for row in zoo_rows() if row["name"] in set(names)]
    header = (f"{'model':<20} {'top-1 clip':<16} {'top-1 continual':<24} {'GFLOPs/clip':>11} "
              f"{'GFLOPs/frame':>12} {'params M':>8} {'RF':>4} {'delay':>5} {'1st out':>8}")
    print(header)
    for r in rows:
        print(f"{r['name']:<20} {r['top1_clip']:<16} {r['top1_continual']:<24} {r['gflops_clip']:>11.3f} "
              f"{_cell(r['gflops_frame'], '.3f'):>12} {r['params_m']:>8.2f} "
              f"{_cell(r['receptive_field'], 'd'):>4} "
              f"{_cell(r['delay'], 'd'):>5} {r['first_output_s']:>7.1f}s")
    print(f"top-1: Kinetics-400 val, published (weights_manifest.json): clip = the checkpoint's own protocol "
          f"(views = clips x crops), continual = one frame step of the continual model (Co3D table). "
          f"GFLOPs/clip: the source network's clip (for a continual model too). RF (receptive field) and "
          f"delay "
          f"in model steps. 1st out: seconds of a {VIDEO_FPS:g} fps video before the first prediction (a "
          f"regular model: one clip), at the model's sampling rate. Counting: {COUNTING}.")


def _info(args: argparse.Namespace) -> int:
    info = model_info(args.name)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print("\n".join(info_lines(info)))
    return 0


def info_lines(info: dict) -> list[str]:
    """A readable summary of `model_info`: what it is, its input, published figures, schedule."""
    lines = [f"{info['name']}: {info['description']}"]
    lines.append(f"  input: {info['frames']} frames every {info['sampling_rate']}, crop {info['test_crop']} "
                 f"(train {info['train_crop']}), mean {tuple(info['mean'])}, std {tuple(info['std'])}; "
                 f"{info['num_classes']} classes ({info['dataset']})")
    weights = info.get("weights")
    if weights:
        publisher = weights["source"].get("publisher") or "-"
        lines.append(f"  weights: {weights['source']['filename']} ({publisher}), "
                     f"licence {weights.get('license', {}).get('spdx', '?')}; `cozoo weights fetch "
                     f"{weights['name']}` or, offline, `cozoo weights import {weights['name']} PATH`")
    else:
        lines.append("  weights: none published (random initialisation)")
    published = info.get("published") or {}
    for record in published.get("accuracy", []):
        top5 = f", top-5 {record['top5']:.2f}" if record.get("top5") is not None else ""
        lines.append(f"  published top-1 {record['top1']:.2f}{top5} on {record.get('split')}: "
                     f"{record.get('protocol')} [{record.get('citation')}]")
    if published.get("gflops") is not None:
        lines.append(f"  published {published['gflops']} GFLOPs ({published.get('gflops_protocol')})")
    if published.get("params_m") is not None:
        lines.append(f"  published params {published['params_m']} M")
    schedule = info.get("schedule")
    if schedule:
        lines.append(f"  continual schedule (model steps): receptive field {schedule['receptive_field']}, "
                     f"delay {schedule['delay']}, first output at step {schedule['first_output']}, "
                     f"a prediction every {schedule['stride']} step(s); one step = every "
                     f"{info['sampling_rate']}-th video frame")
    lines.append("  (--json for every field)")
    return lines


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    listing = subparsers.add_parser("models", help="list registered models (wildcards allowed)")
    listing.add_argument("pattern", nargs="?", default="*",
                         help="shell-style wildcard, e.g. '*x3d*' (a plain word matches names containing it)")
    listing.add_argument("--pretrained", choices=("yes", "no", "any"), default="any",
                         help="only models with (yes) or without (no) a published checkpoint")
    listing.add_argument("--table", action="store_true",
                         help="the zoo table: published top-1, GFLOPs per clip and per frame, params, "
                         "receptive field, delay, first output in seconds (stored figures: instant)")
    listing.set_defaults(handler=_list)
    info = subparsers.add_parser("info", help="config and published figures of one model")
    info.add_argument("name")
    info.add_argument("--json", action="store_true", help="every field, as JSON")
    info.set_defaults(handler=_info)
