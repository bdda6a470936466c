"""``cozoo extract``: features of every video as safetensors files (usage and arguments:
`cozoo.commands.parsers`)."""

from __future__ import annotations

import argparse
import dataclasses

from cozoo import distributed
from cozoo.commands.evaluate import load_from_args
from cozoo.inference.extract import ExtractSummary, extract, list_videos
from cozoo.registry import get_config


def _extract(args: argparse.Namespace) -> int:
    videos = list_videos(args.videos)
    device = distributed.device_for(args.device, distributed.from_env())
    loaded = load_from_args(args)
    model = loaded.continual() if get_config(loaded.name).continual else loaded.model
    with distributed.session(device) as job:
        mine = extract(model, loaded.config, videos, args.out, model_name=loaded.name, clips=args.clips,
                       crop=args.crop, sampling_rate=args.sampling_rate, device=device,
                       progress=not args.quiet)
        parts = distributed.gather_objects(mine)
    if job.main:
        total = ExtractSummary(*(sum(getattr(p, f.name) for p in parts)
                                 for f in dataclasses.fields(ExtractSummary)))
        print(f"{loaded.name}: {total.written} video(s) extracted, {total.skipped} already done, "
              f"{total.failed} undecodable; features in {args.out}")
    return 0
