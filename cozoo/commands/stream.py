"""``cozoo stream SOURCE [SOURCE ...] --model NAME``: per-frame top-k predictions of a continual model on
video files, network streams or cameras (`cozoo.inference.live`), the frame rate achieved, and optionally
JSON lines, an annotated video and a PNG of class probabilities over time."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from tqdm import tqdm

from cozoo.commands.evaluate import load_from_args
from cozoo.data.kinetics import CorruptVideoWarning
from cozoo.data.video import probe_video
from cozoo.evaluation.evaluate import LoadedModel
from cozoo.fuse import fuse_conv_bn
from cozoo.inference.jsonl import JsonLines
from cozoo.inference.live import LiveOptions, LiveRunner, SourceRun
from cozoo.inference.plots import plot_probabilities
from cozoo.inference.pool import StreamPool
from cozoo.inference.sources import ReconnectPolicy, parse_source
from cozoo.inference.video import FramePrediction, VideoStreamer, frame_transform


def _weights(loaded: LoadedModel) -> str:
    if loaded.checkpoint:
        return f"weights from {loaded.checkpoint}"
    if loaded.pretrained:
        return "published weights"
    return "random weights (pass --checkpoint or --pretrained for meaningful predictions)"


def _check_output_paths(args: argparse.Namespace) -> None:
    """Refuse an unusable output path before the model is loaded and the video streamed."""
    if args.reconnect_retries < 0:
        raise ValueError(f"--reconnect-retries must be 0 or more, got {args.reconnect_retries}")
    jsonl = None if args.jsonl == "-" else args.jsonl
    for flag, value, what in (("--plot", args.plot, "a PNG file name"), ("--out", args.out, "an .mp4 file "
                              "name"), ("--jsonl", jsonl, "a file name or -")):
        if value:
            path = Path(value)
            if path.is_dir():
                raise ValueError(f"{flag} {value!r} is a directory; give {what}")
            if flag == "--plot" and path.suffix.lower() != ".png":
                raise ValueError(f"--plot {value!r}: plots are written as PNG; give a file name ending in "
                                 ".png")
            parent = next((p for p in path.absolute().parents if p.exists()), None)
            if parent is not None and not parent.is_dir():
                raise ValueError(f"{flag} {value!r}: {str(parent)!r} is not a directory")


def _numbered(path: str | None, count: int) -> list[str] | None:
    """One output path per source: ``path`` itself for one source, ``stem-0.ext``, ``stem-1.ext``... for
    several."""
    if path is None:
        return None
    if count == 1:
        return [path]
    base = Path(path)
    return [str(base.with_name(f"{base.stem}-{i}{base.suffix}")) for i in range(count)]


def _line(prediction: FramePrediction, record: dict, several: bool) -> str:
    shown = ", ".join(f"{top['label']} {top['prob']:.3f}" for top in record["top"])
    where = (f"frame {prediction.frame_index:5d} (clip {prediction.clip_first}-{prediction.clip_last}, "
             f"centre {prediction.centre_frame:g})")
    notes = ""
    if record.get("padded"):
        notes += f"  [after {record['padded']} repeats of the last frame]"
    if record["lag"] is not None:
        notes += f"  [{record['lag']:.2f} s behind]"
    if record["segment"]:
        notes += f"  [connection {record['segment'] + 1}]"
    prefix = f"[{record['source_index']}] " if several else ""
    return f"{prefix}{where}: {shown}{notes}"


def _seconds(frames: int, fps: float | None) -> str:
    return f" ({frames / fps:.1f} s at {fps:g} fps)" if fps else ""


def _warn_if_short(num_frames: int | None, fps: float | None, needed: int, pad: bool) -> None:
    """Say before streaming that a video ends before the model's first prediction (and what --pad does)."""
    if not num_frames or num_frames >= needed:
        return
    what = ("--pad repeats its last frame until then: one prediction" if pad
            else "no prediction will come: pass --pad to repeat its last frame until the first prediction, "
            "or pick a model with a shorter warm-up (`cozoo models --table`, column '1st out')")
    print(f"cozoo stream: this video has {num_frames} frames{_seconds(num_frames, fps)}, the model's first "
          f"prediction needs {needed}{_seconds(needed, fps)}; {what}", file=sys.stderr, flush=True)


def _header(args: argparse.Namespace, loaded: LoadedModel, streamer: VideoStreamer, rate: int) -> str:
    needed = streamer.video_frame(streamer.first_output) + 1
    stride = int(streamer.model.stride)
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
    warmup = " (padded warm-up: the first predictions see the source's zero padding)" if (
        args.warmup == "padded") else ""
    return (f"{args.model} ({_weights(loaded)}): {streamer.transform.crop}px frames, {taken}; first "
            f"prediction after {streamer.first_output + 1} model steps{warmup} (video frame {needed - 1}"
            f"{_seconds(needed, streamer.fps)}: {short_videos})"
            f"{f', then one every {stride * per_step:g} video frames' if stride > 1 else ''}; {stands_for}"
            f"{'; BatchNorm folded into the convolutions' if args.fuse_bn else ''}"
            f"{'; steps replayed as CUDA graphs' if args.cuda_graphs else ''}")


def _stream(args: argparse.Namespace) -> int:
    if args.cuda_graphs and not str(args.device).startswith("cuda"):
        raise ValueError(f"--cuda-graphs needs a CUDA device (--device cuda), got --device {args.device}")
    # a missing file fails here, before any loading
    specs = [parse_source(text, args.rtsp_transport) for text in args.sources]
    declared = {i: probe_video(spec.url) for i, spec in enumerate(specs) if spec.kind == "file"}
    _check_output_paths(args)
    several = len(specs) > 1
    human = sys.stderr if args.jsonl == "-" else sys.stdout  # standard output holds only JSON then
    loaded = load_from_args(args)
    continual = loaded.continual()
    if args.fuse_bn:
        continual = fuse_conv_bn(continual)
    continual = continual.to(args.device)
    rate = loaded.config.sampling_rate if args.sampling_rate is None else args.sampling_rate
    transform = frame_transform(loaded.config, args.crop)
    streamer = VideoStreamer(continual, transform, rate, args.device, target_fps=loaded.config.target_fps,
                             warmup=args.warmup)
    streamer.fps = next(iter(declared.values())).fps if declared else None  # for the header
    print(_header(args, loaded, streamer, rate), file=human, flush=True)
    if not args.quiet:
        needed = streamer.video_frame(streamer.first_output) + 1
        for info in declared.values():
            _warn_if_short(info.num_frames, info.fps, needed, args.pad)
    names, k = loaded.class_names, min(args.top_k, loaded.num_classes)
    options = LiveOptions(rate, loaded.config.target_fps, k, args.buffer, args.realtime, args.pad,
                          keep=bool(args.plot), reconnect=ReconnectPolicy(retries=args.reconnect_retries))
    total = sum(info.num_frames for info in declared.values()) if len(declared) == len(specs) else None
    progress = tqdm(total=total, unit="frame", disable=args.quiet, file=sys.stderr, dynamic_ncols=True,
                    desc="live" if total is None else None)

    def on_prediction(run: SourceRun, prediction: FramePrediction, record: dict) -> None:
        if args.jsonl != "-":  # with JSON on standard output, the JSON lines are the per-frame output
            tqdm.write(_line(prediction, record, several), file=human)
        if record["lag"] is not None:
            progress.set_postfix_str(f"{record['lag']:.2f} s behind, "
                                     f"{sum(c.dropped for c in runner.buffer.counts)} dropped", refresh=False)

    def advance() -> None:  # frames decoded so far, including those the model's frame-rate rule skips
        progress.update(sum(counts.decoded for counts in runner.buffer.counts) - progress.n)

    jsonl = JsonLines(args.jsonl) if args.jsonl else None
    runner = LiveRunner(continual, transform, specs, names, options, args.device,
                        StreamPool(continual, capacity=len(specs), cuda_graphs=args.cuda_graphs,
                                   warmup=args.warmup), jsonl,
                        _numbered(args.out, len(specs)), on_prediction, lambda run, item: advance(),
                        log=lambda message: tqdm.write(f"cozoo stream: {message}", file=sys.stderr))
    runs = runner.run()
    advance()
    progress.close()
    for message in runner.warnings:
        warnings.warn(message, CorruptVideoWarning, stacklevel=1)
    elapsed = max(runner.seconds, 1e-9)
    failed = False
    for run in runs:
        counts = runner.buffer.counts[run.index]
        dropped = (f", {counts.dropped} frames dropped to keep up ({counts.dropped_steps} model steps)"
                   if counts.dropped else "")
        reconnects = f", {run.reconnects} reconnections" if run.reconnects else ""
        print(f"{f'[{run.index}] {run.spec.text}: ' if several else ''}"
              f"{'interrupted: ' if runner.interrupted else ''}{counts.decoded} frames decoded, {run.steps} "
              f"model steps, {run.predictions} predictions in {elapsed:.2f} s: "
              f"{counts.decoded / elapsed:.1f} frames/s ({run.steps / elapsed:.1f} model steps/s)"
              f"{dropped}{reconnects}", file=human, flush=True)
        if run.error is not None:
            failed = True
            print(f"cozoo stream: error: {run.spec.text}: {run.error}", file=sys.stderr)
    for run, plot in zip(runs, _numbered(args.plot, len(specs)) or [], strict=False):
        if run.kept:
            path = plot_probabilities(run.kept, names, plot, top=args.plot_classes,
                                      title=f"{args.model}: {run.spec.text}",
                                      fps=declared[run.index].fps if run.index in declared else None)
            print(f"wrote {path}", file=human)
    for run, out in zip(runs, _numbered(args.out, len(specs)) or [], strict=False):
        if run.writer is not None and run.writer.frames:
            print(f"wrote {out} ({run.writer.frames} annotated frames)", file=human)
    if args.jsonl and args.jsonl != "-":
        print(f"wrote {args.jsonl}", file=human)
    if runner.interrupted:
        return 130
    if failed:
        return 1
    for run in runs:
        if run.predictions == 0:
            needed = streamer.video_frame(streamer.first_output) + 1
            smaller_rate = " or a smaller --sampling-rate" if rate > 1 else ""
            frames = runner.buffer.counts[run.index].decoded
            source = f" from {run.spec.text}" if several else ""
            print(f"cozoo stream: no prediction{source}: the video ended after {frames} frames ({run.steps} "
                  f"model steps); the first prediction needs {needed} frames ({streamer.first_output + 1} "
                  f"steps). Pass --pad to repeat the last frame until then, or use a "
                  f"longer video{smaller_rate}",
                  file=sys.stderr)
            return 1
    return 0
