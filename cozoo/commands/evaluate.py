"""``cozoo eval --model NAME --annotations CSV --videos DIR``: clip, multi-view and continual streaming
accuracy (top-1/top-5) with confusion matrices; see `cozoo.evaluation`. Under ``torchrun -m cozoo eval ...``
the processes share the videos and rank 0 writes the same metrics as one process."""

from __future__ import annotations

import argparse
import dataclasses
import json

from cozoo import distributed
from cozoo.data.kinetics import load_label_map
from cozoo.evaluation.evaluate import (
    DEFAULT_MODES,
    LoadedModel,
    evaluate,
    load_model,
    names_from_label_map,
    summary_lines,
    write_report,
)
from cozoo.factory import get_config


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
