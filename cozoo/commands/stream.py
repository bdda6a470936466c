"""``cozoo stream VIDEO --model NAME``: per-frame top-k predictions of a continual model while the video is
decoded, the frame rate achieved, and optionally a PNG of class probabilities over time."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cozoo.commands import positive_int
from cozoo.commands.evaluate import add_model_arguments, load_from_args
from cozoo.continual.base import WARMUP_MODES
from cozoo.data.video import probe_video
from cozoo.evaluation.evaluate import LoadedModel
from cozoo.fuse import fuse_conv_bn
from cozoo.inference.plots import plot_probabilities
from cozoo.inference.video import FramePrediction, VideoStreamer, frame_transform, stream_video


def _weights(loaded: LoadedModel) -> str:
    if loaded.checkpoint:
        return f"weights from {loaded.checkpoint}"
    if loaded.pretrained:
        return "published weights"
    return "random weights (pass --checkpoint or --pretrained for meaningful predictions)"


def _check_plot_path(args: argparse.Namespace) -> None:
    """Refuse an unusable plot path before the model is loaded and the video streamed."""
    if args.plot:
        plot = Path(args.plot)
        if plot.is_dir():
            raise ValueError(f"--plot {args.plot!r} is a directory; give a PNG file name")
        parent = next((p for p in plot.absolute().parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise ValueError(f"--plot {args.plot!r}: {str(parent)!r} is not a directory")


def _print(prediction: FramePrediction, names: list[str], k: int, note: str = "") -> None:
    top = prediction.probs.topk(k)
    shown = ", ".join(f"{names[i]} {p:.3f}" for p, i in zip(top.values.tolist(), top.indices.tolist(),
                                                               strict=True))
    where = (f"frame {prediction.frame_index:5d} (clip {prediction.clip_first}-{prediction.clip_last}, "
             f"centre {prediction.centre_frame:g})")
    print(f"{where}: {shown}{note}", flush=True)


def _stream(args: argparse.Namespace) -> int:
    if args.cuda_graphs and not str(args.device).startswith("cuda"):
        raise ValueError(f"--cuda-graphs needs a CUDA device (--device cuda), got --device {args.device}")
    video_fps = probe_video(args.video).fps  # a missing or unreadable video fails here, before any loading
    _check_plot_path(args)
    loaded = load_from_args(args)
    continual = loaded.continual()
    if args.fuse_bn:
        continual = fuse_conv_bn(continual)
    continual = continual.to(args.device)
    rate = loaded.config.sampling_rate if args.sampling_rate is None else args.sampling_rate
    streamer = VideoStreamer(continual, frame_transform(loaded.config, args.crop), rate, args.device,
                             cuda_graphs=args.cuda_graphs, target_fps=loaded.config.target_fps,
                             warmup=args.warmup)
    streamer.fps = video_fps  # what stream_video will tell it: for the header
    names, k = loaded.class_names, min(args.top_k, loaded.num_classes)
    needed = streamer.video_frame(streamer.first_output) + 1
    stride = int(continual.stride)
    short_videos = ("shorter videos are padded with their last frame" if args.pad
                    else "shorter videos give none without --pad")
    per_step = streamer.frames_per_step
    if streamer.by_time:
        taken = f"frames {rate / streamer.target_fps:.3g} s apart (a {streamer.target_fps:g} fps timeline)"
    else:
        taken = f"every {rate} frame(s) of the video"
    timing = streamer.stream.timing
    if timing.recurrent:
        stands_for = "each prediction at frame f stands for video frames 0 to f (recurrent state)"
    else:
        back, centre = timing.delay * per_step, (timing.delay - (timing.clip_length - 1) / 2) * per_step
        stands_for = (f"each prediction at frame f stands for the source clip of {timing.clip_length} model "
                      f"frames from video frame f - {back:g} (centre about f - {centre:g})")
    print(f"{args.model} ({_weights(loaded)}): {streamer.transform.crop}px frames, {taken}; "
          f"{'padded' if args.warmup == 'padded' else 'valid'} warm-up, first "
          f"prediction after {streamer.first_output + 1} model steps (video frame {needed - 1}: "
          f"{short_videos})"
          f"{f', then one every {stride * per_step:g} video frames' if stride > 1 else ''}; {stands_for}"
          f"{'; BatchNorm folded into the convolutions' if args.fuse_bn else ''}"
          f"{'; steps replayed as CUDA graphs' if args.cuda_graphs else ''}", flush=True)
    predictions: list[FramePrediction] = []
    start = time.perf_counter()
    interrupted = False
    try:
        for prediction in stream_video(streamer, args.video):
            predictions.append(prediction)
            _print(prediction, names, k)
        if not predictions and args.pad:
            prediction = streamer.pad_until_output()
            assert prediction is not None
            predictions.append(prediction)
            _print(prediction, names, k, f"  [after {streamer.padded} repeats of the last frame]")
    except KeyboardInterrupt:
        interrupted = True
    elapsed = max(time.perf_counter() - start, 1e-9)
    print(f"{'interrupted: ' if interrupted else ''}{streamer.frames_read} frames decoded, {streamer.steps} "
          f"model steps, {len(predictions)} predictions in {elapsed:.2f} s: "
          f"{streamer.frames_read / elapsed:.1f} frames/s ({streamer.steps / elapsed:.1f} model steps/s)",
          flush=True)
    if args.plot and predictions:
        path = plot_probabilities(predictions, names, args.plot, top=args.plot_classes,
                                  title=f"{args.model}: {args.video}")
        print(f"wrote {path}")
    if interrupted:
        return 130
    if not predictions:
        smaller_rate = " or a smaller --sampling-rate" if rate > 1 else ""
        print(f"cozoo stream: no prediction: the video ended after {streamer.frames_read} frames "
              f"({streamer.steps} model steps); the first prediction needs {needed} frames "
              f"({streamer.first_output + 1} steps). Pass --pad to repeat the last frame until then, or "
              f"use a longer video{smaller_rate}", file=sys.stderr)
        return 1
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stream", help="per-frame predictions of a continual model on a video file, frames/s, plot"
    )
    parser.add_argument("video", help="video file (e.g. an .mp4)")
    add_model_arguments(parser)
    parser.add_argument("--top-k", type=positive_int, default=5, help="classes printed per frame (default 5)")
    parser.add_argument("--no-fuse-bn", dest="fuse_bn", action="store_false",
                        help="keep BatchNorm layers separate (by default each BatchNorm that follows a conv "
                        "is folded into it: same predictions up to float rounding, fewer ops per frame)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="with --device cuda: replay each steady-state step as a CUDA graph (the fast "
                        "path: same predictions, a fraction of the launch overhead)")
    parser.add_argument("--pad", action="store_true",
                        help="for a video shorter than the warm-up: repeat its last frame until the first "
                        "prediction (the clip samplers' rule for short videos)")
    parser.add_argument("--warmup", choices=WARMUP_MODES, default="valid",
                        help="valid (default): predictions once the receptive field holds real frames only; "
                        "padded: start from the source network's temporal zero padding, predictions from "
                        "step `delay` on (Co3D's early outputs)")
    parser.add_argument("--plot", metavar="PNG", help="write the top classes' probabilities over time here")
    parser.add_argument("--plot-classes", type=positive_int, default=5,
                        help="classes drawn in the plot (default 5)")
    parser.set_defaults(handler=_stream)
