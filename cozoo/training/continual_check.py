"""The continual counterpart of a fine-tuned model, and its accuracy on videos streamed frame by frame."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from cozoo.continual import to_continual
from cozoo.data import CorruptVideoWarning, KineticsDataset, VideoDecodeError, eval_transform
from cozoo.data.transforms import CropRounding
from cozoo.factory import create_model, get_config, list_models
from cozoo.inference.video import FrameTransform, VideoStreamer, stream_video_to_end


def build_continual(
    name: str, num_classes: int, kwargs: Mapping[str, Any], pool_window: int,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> nn.Module:
    """The continual model of regular model ``name`` (registry name ``"co" + name`` when there is one,
    otherwise `cozoo.continual.to_continual`), loaded with ``state_dict`` (same keys as the regular model)."""
    continual_name = f"co{name}"
    if continual_name in list_models() and get_config(continual_name).source == name:
        model = create_model(continual_name, num_classes=num_classes, pool_window=pool_window, **kwargs)
    else:
        model = to_continual(create_model(name, num_classes=num_classes, **kwargs), pool_window=pool_window)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model


@dataclass(frozen=True)
class StreamingResult:
    """Accuracy of the prediction at the last frame of each video. ``padded``: videos with fewer frames
    than the model's warm-up, extended by repeating their last frame (as `cozoo eval` does); ``skipped``:
    videos that failed to decode part-way (left out)."""

    accuracy: float
    videos: int
    padded: int
    skipped: int
    frames: int
    correct: int = 0

    @classmethod
    def combine(cls, parts: Sequence[StreamingResult]) -> StreamingResult:
        """One result from those of disjoint shares of the videos (e.g. one per process)."""
        videos, correct = sum(p.videos for p in parts), sum(p.correct for p in parts)
        return cls(correct / videos if videos else 0.0, videos, sum(p.padded for p in parts),
                   sum(p.skipped for p in parts), sum(p.frames for p in parts), correct)

    def as_dict(self) -> dict[str, Any]:
        return {"continual_val_acc": self.accuracy, "continual_videos": self.videos,
                "continual_padded": self.padded, "continual_skipped": self.skipped,
                "continual_frames": self.frames}


@torch.no_grad()
def streaming_accuracy(
    model: nn.Module, dataset: KineticsDataset, sampling_rate: int, crop: int, mean: tuple[float, ...],
    std: tuple[float, ...], short_side: int | None = None, device: torch.device | str = "cpu",
    target_fps: float | None = None, videos: Sequence[tuple[Any, Any]] | None = None,
    resize: tuple[int, int] | None = None, crop_rounding: CropRounding = "floor",
    progress: bool = False,
) -> StreamingResult:
    """Stream every video of ``dataset`` through continual ``model``: every ``sampling_rate``-th frame,
    resized, centre-cropped and normalised as for clip evaluation, pushed one at a time; the prediction
    after the last frame counts. A video shorter than the warm-up is extended by repeating its last frame
    (`VideoStreamer.pad_until_output`, the clip samplers' rule for short videos). With ``target_fps``,
    frames are taken by time, as the clips were. ``videos``: a share of ``dataset.videos`` (default all);
    ``resize`` and ``crop_rounding`` as in `eval_transform`; ``progress``: a bar on standard error."""
    transform = FrameTransform(eval_transform(crop=crop, mean=mean, std=std, short_side=short_side,
                                              resize=resize, crop_rounding=crop_rounding))
    streamer = VideoStreamer(model.to(device).eval(), transform, sampling_rate, device, target_fps=target_fps)
    correct = padded = skipped = pushed = 0
    videos = tqdm(dataset.videos if videos is None else videos, unit="video",
                  desc="continual check (streaming)", leave=False, file=sys.stderr, disable=not progress)
    for record, path in videos:
        try:
            last = stream_video_to_end(streamer, path)[-1]
        except VideoDecodeError as err:
            warnings.warn(f"streaming: skipping video: {err}", CorruptVideoWarning, stacklevel=2)
            skipped += 1
            continue
        padded += streamer.padded > 0
        pushed += streamer.steps
        if int(last.logits.argmax(-1)) == dataset.label_map[record.label]:
            correct += 1
    scored = len(videos) - skipped
    return StreamingResult(correct / scored if scored else 0.0, scored, padded, skipped, pushed, correct)
