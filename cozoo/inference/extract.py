"""Feature extraction for reuse (linear probes, retrieval, online action detection pipelines): one
safetensors file per video, stamped with the video frames the features belong to.

* ``clip`` protocol (a regular model): ``clips`` uniformly spaced clips (1: the centre clip, as ``cozoo eval``
  takes), centre crop; ``features`` (clips, F) are the pooled pre-logits features
  (``forward_head(forward_features(clip), pre_logits=True)``), ``frames`` (clips, T) the video frames of each.
* ``stream`` protocol (a continual model): the video steps through the model frame by frame as in
  ``cozoo stream``; ``features`` (steps, F) are the pooled features of every step with an output
  (``Stream(features=True)``), ``frames`` (steps,) the video frame just fed and ``centre_frames`` (steps,
  float) the middle of each step's source clip (see `cozoo.continual.timing`). A video shorter than the
  warm-up repeats its last frame.

Files are written atomically, so an existing file is a finished video: a rerun skips it (resumable).
Under torchrun every process takes its share of the videos.
"""

from __future__ import annotations

import csv
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from cozoo import distributed
from cozoo.data.kinetics import CorruptVideoWarning
from cozoo.data.samplers import UniformClipSampler, resampled_length, to_video_frames
from cozoo.data.transforms import eval_transform
from cozoo.data.video import VideoDecodeError, VideoEndedEarly, probe_video, read_frames
from cozoo.inference.video import VideoStreamer, frame_transform, stream_video_to_end
from cozoo.models.registry import ModelConfig
from cozoo.timeline import samples_by_time

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")


@dataclass(frozen=True)
class VideoItem:
    """A video to extract and its output name (its path relative to the folder or CSV, suffix dropped)."""

    path: Path
    name: str


def list_videos(source: str | os.PathLike) -> list[VideoItem]:
    """The videos of a folder (every file with a video suffix below it, sorted) or of a CSV file (a ``path``
    column, else the first column; relative paths from the CSV's folder)."""
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        items = [VideoItem(p, p.relative_to(source).with_suffix("").as_posix()) for p in paths]
    elif source.is_file():
        with source.open(newline="", encoding="utf-8") as file:
            rows = [row for row in csv.reader(file) if row and row[0].strip()]
        if rows and "path" in [cell.strip() for cell in rows[0]]:
            column = [cell.strip() for cell in rows[0]].index("path")
            rows = rows[1:]
        else:
            column = 0
        items = []
        for row in rows:
            given = Path(row[column].strip())
            path = given if given.is_absolute() else source.parent / given
            items.append(VideoItem(path, given.with_suffix("").as_posix().lstrip("/")))
    else:
        raise FileNotFoundError(f"--videos: no folder or CSV file {str(source)!r}")
    if not items:
        raise ValueError(f"no videos in {str(source)!r} (suffixes {', '.join(VIDEO_SUFFIXES)})")
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"videos with the same name but another suffix would share an output file: "
                         f"{twice[:5]}")
    return items


def clip_features(model: nn.Module, config: ModelConfig, path: Path, clips: int = 1, crop: int | None = None,
                  device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """``features`` (clips, F) and ``frames`` (clips, T) of the clip protocol (module docstring); ``crop``
    overrides the test crop and short side, as in ``cozoo eval``."""
    info = probe_video(path)
    sampler = UniformClipSampler(config.frames, config.sampling_rate, clips)
    count = info.num_frames

    def indices(clip: int) -> list[int]:
        if not samples_by_time(info.fps, config.target_fps):
            return sampler(count, clip)
        timeline = sampler(resampled_length(count, info.fps, config.target_fps), clip)  # type: ignore[arg-type]
        return to_video_frames(timeline, info.fps, config.target_fps, count)  # type: ignore[arg-type]

    try:
        frames = [indices(c) for c in range(clips)]
        decoded = read_frames(path, sorted({i for f in frames for i in f}))
    except VideoEndedEarly as short:  # the container overstated its length: sample within what decodes
        count = short.decoded_frames
        frames = [indices(c) for c in range(clips)]
        decoded = read_frames(path, sorted({i for f in frames for i in f}))
    by_index = dict(zip(sorted({i for f in frames for i in f}), decoded, strict=True))
    transform = eval_transform(config, crop=crop)
    batch = torch.stack([transform(torch.stack([by_index[i] for i in f])) for f in frames]).to(device)
    with torch.inference_mode():
        features = model.forward_head(model.forward_features(batch), pre_logits=True)  # type: ignore[operator]
    return {"features": features.float().cpu().contiguous(), "frames": torch.tensor(frames, dtype=torch.long)}


def stream_features(streamer: VideoStreamer, path: Path) -> dict[str, torch.Tensor]:
    """``features`` (steps, F), ``frames`` and ``centre_frames`` (steps,) of the stream protocol."""
    predictions = stream_video_to_end(streamer, path)
    return {
        "features": torch.stack([p.features for p in predictions]).float().contiguous(),  # type: ignore[misc]
        "frames": torch.tensor([p.frame_index for p in predictions], dtype=torch.long),
        "centre_frames": torch.tensor([p.centre_frame for p in predictions], dtype=torch.float64),
    }


@dataclass
class ExtractSummary:
    written: int = 0
    skipped: int = 0  # already done
    failed: int = 0  # could not be decoded


def extract(
    model: nn.Module,
    config: ModelConfig,
    videos: Sequence[VideoItem],
    out_dir: str | os.PathLike,
    *,
    model_name: str,
    clips: int = 1,
    crop: int | None = None,
    sampling_rate: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> ExtractSummary:
    """Write ``<out_dir>/<video name>.safetensors`` for each video of this process's share (module
    docstring); a continual ``model`` streams (every ``sampling_rate``-th frame, default the clip's).
    Returns the counts of this process."""
    out = Path(out_dir)
    continual = hasattr(model, "forward_step_features")
    model = model.to(device).eval()
    rate = sampling_rate or config.sampling_rate
    streamer = None
    if continual:
        streamer = VideoStreamer(model, frame_transform(config, crop), rate, device,
                                 target_fps=config.target_fps, features=True)
    job = distributed.current()
    share = distributed.shard(videos, job)
    summary = ExtractSummary()
    metadata = {"model": model_name, "protocol": "stream" if continual else "clip",
                "sampling_rate": str(rate), "frames_per_clip": str(config.frames),
                "target_fps": str(config.target_fps)}
    for item in tqdm(share, unit="video", desc="extract", disable=not (progress and job.main)):
        target = out / f"{item.name}.safetensors"
        if target.is_file():
            summary.skipped += 1
            continue
        try:
            tensors = (stream_features(streamer, item.path) if streamer is not None
                       else clip_features(model, config, item.path, clips, crop, device))
        except (FileNotFoundError, VideoDecodeError) as err:
            warnings.warn(f"skipping video: {err}", CorruptVideoWarning, stacklevel=2)
            summary.failed += 1
            continue
        _save_atomic(tensors, target, {**metadata, "video": str(item.path)})
        summary.written += 1
    return summary


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        save_file(tensors, temp, metadata=metadata)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
