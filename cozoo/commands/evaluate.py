"""``cozoo eval --model NAME --annotations CSV --videos DIR``: clip, multi-view and continual streaming
accuracy (top-1/top-5) with confusion matrices; see `cozoo.evaluation`. Under ``torchrun -m cozoo eval ...``
the processes share the videos and rank 0 writes the same metrics as one process."""

from __future__ import annotations

import argparse
import dataclasses
import json

from cozoo import distributed
from cozoo.commands import add_quiet_argument, add_threads_argument, positive_float, positive_int
from cozoo.data.kinetics import load_label_map
from cozoo.evaluation.evaluate import (
    DEFAULT_MODES,
    MODES,
    LoadedModel,
    evaluate,
    load_model,
    names_from_label_map,
    summary_lines,
    write_report,
)
from cozoo.factory import get_config


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``cozoo eval`` and ``cozoo stream``: model, weights, class names, preprocessing."""
    parser.add_argument("--model", required=True, help="registered name, e.g. x3d_s or cox3d_s_64")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", metavar="PATH",
                         help="weights file: a fine-tuning checkpoint, a state dict or a published file")
    weights.add_argument("--pretrained", action="store_true", help="the published weights (cached download)")
    parser.add_argument("--label-map", metavar="JSON",
                        help="class names of the outputs ({\"classes\": [...]}), overriding the checkpoint's")
    parser.add_argument("--crop", type=positive_int,
                        help="test crop and short side (default: the model's test crop)")
    parser.add_argument("--sampling-rate", type=positive_int, metavar="N",
                        help="continual models see every N-th frame (default: the clip sampling rate)")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--target-fps", type=positive_float, metavar="FPS",
                        help="sample by time on a timeline at FPS frames/s, whatever each video's rate "
                        "(default: the fine-tuning recipe's, else the model publisher's: 30 for PyTorchVideo "
                        "models, 15 for torchvision's R(2+1)D-18, none for C3D)")
    timing.add_argument("--by-index", action="store_true",
                        help="sample by frame index (every sampling-rate-th frame), whatever the "
                        "video's rate")
    parser.add_argument("--pool-window", type=positive_int, metavar="FRAMES",
                        help="temporal window of the continual global pool (default: the model's)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def load_from_args(args: argparse.Namespace) -> LoadedModel:
    """The model, weights and class names the shared options ask for."""
    names = names_from_label_map(load_label_map(args.label_map)) if args.label_map else None
    loaded = load_model(args.model, checkpoint=args.checkpoint, pretrained=args.pretrained,
                        class_names=names, pool_window=args.pool_window)
    if args.target_fps is not None or args.by_index:
        loaded.config = dataclasses.replace(loaded.config, target_fps=args.target_fps)
    return loaded


def _modes(args: argparse.Namespace, loaded: LoadedModel) -> list[str]:
    """``--modes``, or the modes ``--protocol`` stands for."""
    if args.protocol is None:
        return list(args.modes or DEFAULT_MODES)
    if args.modes:
        raise ValueError("pass either --modes or --protocol, not both")
    return ["co3d"] if get_config(args.model).continual else ["clip"]


def _eval(args: argparse.Namespace) -> int:
    device = distributed.device_for(args.device, distributed.from_env())
    loaded = load_from_args(args)
    with distributed.session(device) as job:
        metrics = _evaluate(args, loaded, device)
    if not job.main:
        return 0
    if args.out:
        written = write_report(metrics, args.out)
    if args.json:
        print(json.dumps(metrics, indent=1))
    else:
        print("\n".join(summary_lines(metrics)))
        if args.out:
            print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _evaluate(args: argparse.Namespace, loaded: LoadedModel, device: object) -> dict:
    return evaluate(
        loaded,
        args.annotations,
        args.videos,
        split=args.split,
        modes=_modes(args, loaded),
        frame_delay=args.frame_delay,
        num_clips=args.clips,
        num_crops=args.crops,
        crop=args.crop,
        sampling_rate=args.sampling_rate,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=device,  # type: ignore[arg-type]
        progress=not args.quiet,
    )


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="accuracy on a Kinetics-layout dataset: clip, multi-view and continual streaming"
    )
    add_model_arguments(parser)
    parser.add_argument("--annotations", required=True, metavar="CSV", help="Kinetics annotation CSV")
    parser.add_argument("--videos", required=True, metavar="DIR", help="folder holding the videos")
    parser.add_argument("--split", help="keep only rows of this split (e.g. val)")
    parser.add_argument("--modes", nargs="+", choices=MODES,
                        help=f"results to compute (default: {' '.join(DEFAULT_MODES)}); co3d: the Co3D "
                        "table's continual protocol (one clip stepped from zero padding, one output scored)")
    parser.add_argument("--protocol", choices=("co3d",),
                        help="evaluate as the Co3D table did: clip for a regular model, co3d for a continual "
                        "one (e.g. cozoo eval --model cox3d_s_64 --protocol co3d)")
    parser.add_argument("--frame-delay", type=int, default=0, metavar="N",
                        help="co3d: Co3D's forward_frame_delay; the output of step max(delay, N - 1) is "
                        "scored (default 0: step delay)")
    parser.add_argument("--clips", type=positive_int, default=10,
                        help="clips per video in multiview (default 10)")
    parser.add_argument("--crops", type=int, choices=(1, 3), default=3, help="crops per clip in multiview")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--out", metavar="DIR", help="write metrics.json and confusion_<result>.png here")
    parser.add_argument("--json", action="store_true", help="print the full metrics as JSON")
    add_threads_argument(parser)
    add_quiet_argument(parser)
    parser.set_defaults(handler=_eval)
