"""``cozoo extract --model NAME --videos DIR|CSV --out DIR``: features of every video, one safetensors file
each (see `cozoo.inference.extract`): per clip for a regular model, per frame for a continual one. Reruns
skip finished videos; ``torchrun -m cozoo extract ...`` shares the videos among the processes."""

from __future__ import annotations

import argparse
import dataclasses

from cozoo import distributed
from cozoo.commands import add_threads_argument, positive_int
from cozoo.commands.evaluate import add_model_arguments, load_from_args
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


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract", help="per-video (clip) or per-frame (continual stream) features as safetensors files",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument("--videos", required=True, metavar="DIR|CSV",
                        help="a folder of videos (searched recursively) or a CSV with a 'path' column")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the .safetensors files go")
    parser.add_argument("--clips", type=positive_int, default=1,
                        help="regular models: uniformly spaced clips per video (default 1: the centre clip)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads_argument(parser)
    parser.set_defaults(handler=_extract)
