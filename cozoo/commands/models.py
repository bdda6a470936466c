"""``cozoo models [PATTERN] [--table]`` and ``cozoo info NAME [--json]``: what the registry holds.

The listing and the table come from the stored figures (`cozoo.zoo`), so they need neither torch nor a
model; ``info`` builds the model (its schedule) and imports the factory when it runs."""

from __future__ import annotations

import argparse
import json
import sys

from cozoo.zoo import COUNTING, VIDEO_FPS, load_zoo_figures, zoo_names, zoo_rows


def _list(args: argparse.Namespace) -> int:
    pretrained = {"yes": True, "no": False, "any": None}[args.pretrained]
    names = zoo_names(args.pattern, pretrained=pretrained)
    if not names and not any(c in args.pattern for c in "*?["):  # a plain word: names containing it
        names = zoo_names(f"*{args.pattern}*", pretrained=pretrained)
    if not names:
        print(f"cozoo models: no model matches {args.pattern!r}"
              + ("" if pretrained is None else f" with --pretrained {args.pretrained}"), file=sys.stderr)
        return 1
    if args.table:
        _table(names)
        return 0
    figures = load_zoo_figures()
    for name in names:
        stored = figures[name]
        kind = f"continual from {stored['source']}" if stored["source"] else "regular"
        print(f"{name:22s} {stored['frames']:3d} frames  crop {stored['test_crop']:3d}  {kind}")
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
    from cozoo.factory import model_info  # builds the model: torch

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
