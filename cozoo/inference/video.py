"""Streaming inference on a video file: decode frames one by one, preprocess each like the clip
transform does, step a continual model and get a prediction per frame (plots: `cozoo.inference.plots`).

Each frame goes through the model's test transform on its own (`FrameTransform`: short side resized to
the config's test short side (default the test crop), centre crop, /255, normalised with the config's mean
and std), which gives exactly that frame of the transformed clip. With ``sampling_rate`` r the model sees
video frames 0, r, 2r, ..., the spacing of the frames in its training clips (with ``target_fps``: the
frames on screen at instants r / target_fps seconds apart, as time-based clip sampling takes them).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from cozoo.continual.stream import Stream
from cozoo.continual.timing import Stamped
from cozoo.data.kinetics import CorruptVideoWarning
from cozoo.data.transforms import VideoTransform, eval_transform
from cozoo.data.video import FRAME_COUNT_SLACK, PathLike, VideoDecodeError, iter_frames, probe_video
from cozoo.models.registry import ModelConfig
from cozoo.timeline import StepTimeline


@dataclass(frozen=True)
class FrameTransform:
    """One decoded frame ``(H, W, 3)`` uint8 -> model input ``(1, 3, crop, crop)`` float.

    Applies the test clip transform to a one-frame clip, so frame ``t`` of ``clip_transform(video)`` equals
    ``FrameTransform(clip_transform)(video[t])``.
    """

    clip_transform: VideoTransform

    def __post_init__(self) -> None:
        if self.clip_transform.training or self.clip_transform.num_crops != 1:
            raise ValueError("streaming needs a test transform with a single centre crop")

    @property
    def crop(self) -> int:
        return self.clip_transform.crop

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        if frame.dtype != torch.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(
                f"expected a uint8 frame of shape (H, W, 3), got {frame.dtype} {tuple(frame.shape)}"
            )
        return self.clip_transform(frame.unsqueeze(0))[:, 0].unsqueeze(0)


def frame_transform(config: ModelConfig, crop: int | None = None) -> FrameTransform:
    """The per-frame test transform of ``config`` (``crop`` overrides its test crop and short side)."""
    return FrameTransform(eval_transform(config, crop=crop))


@dataclass(frozen=True)
class FramePrediction(Stamped):
    """The model's output after video frame ``frame_index`` (the ``step``-th frame it was fed), stamped in
    video frames (see `cozoo.continual.timing`): ``first_frame .. frame_index`` is what its receptive field
    spans, ``clip_first .. clip_last`` its source clip (the frames the regular model's clip would sample)
    and ``centre_frame`` that clip's middle. Stamps of steps padded past the video's end stop at its last
    frame.
    """

    frame_index: int
    step: int
    logits: torch.Tensor | None
    first_frame: int
    clip_first: int
    clip_last: int
    features: torch.Tensor | None = None  # a features stream's (``VideoStreamer(features=True)``)

    @property
    def probs(self) -> torch.Tensor:
        if self.logits is None:
            raise ValueError("a features stream has no class scores")
        return self.logits.float().softmax(dim=-1)


class VideoStreamer(StepTimeline):
    """Steps a continual model through frames (replayed as CUDA graphs with ``cuda_graphs``, see
    `Stream`; pooled features instead of logits with ``features``); counts what it decoded and fed.

    ``frames_read``: frames taken from the input; ``steps``: frames fed to the model (every
    ``sampling_rate``-th); ``padded``: extra repeats of the last frame fed by `pad_until_output`.
    With ``target_fps`` and a video's frame rate (`feed`'s ``fps``), steps are taken every
    ``sampling_rate`` frames of a ``target_fps`` timeline instead: the frame on screen at each such instant.
    """

    def __init__(
        self,
        model: nn.Module,
        transform: FrameTransform,
        sampling_rate: int = 1,
        device: torch.device | str = "cpu",
        cuda_graphs: bool = False,
        target_fps: float | None = None,
        warmup: str = "valid",
        features: bool = False,
    ) -> None:
        if sampling_rate < 1:
            raise ValueError(f"sampling_rate must be >= 1, got {sampling_rate}")
        if target_fps is not None and not 0 < target_fps < math.inf:
            raise ValueError(f"target_fps must be a positive number, got {target_fps}")
        self.target_fps = target_fps
        self.fps: float | None = None  # of the video being fed (see `feed`)
        self.model = model
        self.transform = transform
        self.sampling_rate = sampling_rate
        self.device = torch.device(device)
        self.stream = Stream(model, cuda_graphs=cuda_graphs, features=features, warmup=warmup)
        self.frames_read = 0
        self.steps = 0
        self.padded = 0
        self._last_input: torch.Tensor | None = None

    @property
    def delay(self) -> int:
        """Model steps from the first frame of a prediction's source clip to the prediction (see
        `cozoo.continual.timing`)."""
        return self.stream.delay

    @property
    def first_output(self) -> int:
        """Model steps before the first prediction (warm-up)."""
        return self.stream.first_output

    def reset(self) -> None:
        self.stream.reset()
        self.frames_read = self.steps = self.padded = 0
        self._last_input = None

    def _push(self, x: torch.Tensor, frame_index: int) -> FramePrediction | None:
        out = self.stream.push(x)
        self.steps += 1
        if out is None:
            return None
        # Padded steps extend the timeline past the last real frame: stamps stop at that frame.
        first, clip_first, clip_last = (min(self.video_frame(step), frame_index)
                                        for step in (out.first_frame, out.clip_first, out.clip_last))
        stamps = (first, clip_first, clip_last)
        if out.logits is None:
            return FramePrediction(frame_index, out.frame_index, None, *stamps, out.features[0].cpu())  # type: ignore[index]
        return FramePrediction(frame_index, out.frame_index, out.logits[0].cpu(), *stamps)

    def feed(self, frames: Iterable[torch.Tensor], fps: float | None = None) -> Iterator[FramePrediction]:
        """Push decoded ``(H, W, 3)`` uint8 frames (of a video at ``fps``, used with ``target_fps``); yield a
        prediction whenever the model emits one."""
        if self.padded:
            raise ValueError("pad_until_output already ended this video's stream: call reset() to feed more")
        if self.target_fps is not None and not fps:
            warnings.warn("target_fps is set but the video's frame rate is unknown: frames are taken by "
                          "index", stacklevel=2)
        self.fps = fps
        for frame in frames:
            index = self.frames_read
            self.frames_read += 1
            repeats = self._steps_at(index)
            if not repeats:
                continue
            self._last_input = self.transform(frame).to(self.device)
            for _ in range(repeats):  # >1 only when the timeline is faster than the video
                prediction = self._push(self._last_input, index)
                if prediction is not None:
                    yield prediction

    def pad_until_output(self) -> FramePrediction | None:
        """Repeat the last fed frame until the model's first prediction (for videos shorter than the
        warm-up; the clip samplers' rule for short videos). None if a prediction was already made.
        The prediction is tagged with the last real frame, and its centre is at most that frame."""
        if self._last_input is None:
            raise ValueError("no frame was fed")
        while not self.stream.warm:
            self.padded += 1
            prediction = self._push(self._last_input, self.frames_read - 1)
            if prediction is not None:
                return prediction
        return None


def stream_video(streamer: VideoStreamer, path: PathLike) -> Iterator[FramePrediction]:
    """Decode ``path`` frame by frame through ``streamer`` (reset first), yielding predictions as they come.

    A missing file raises ``FileNotFoundError``; an unreadable one, or one without frames,
    ``VideoDecodeError``; one that ends well before the frame count it declares, a `CorruptVideoWarning`.
    """
    info = probe_video(path)
    declared = info.num_frames
    streamer.reset()
    yield from streamer.feed(iter_frames(path), fps=info.fps)
    if streamer.frames_read == 0:
        raise VideoDecodeError(path, "no frame could be decoded")
    if streamer.frames_read + FRAME_COUNT_SLACK < declared:
        warnings.warn(f"{os.fspath(path)!r}: decoding ended after {streamer.frames_read} of the {declared} "
                      "frames the file declares (truncated?)", CorruptVideoWarning, stacklevel=2)


def stream_video_to_end(streamer: VideoStreamer, path: PathLike) -> list[FramePrediction]:
    """All of `stream_video`'s predictions; a video shorter than the warm-up gets the one made by repeating
    its last frame (`VideoStreamer.pad_until_output`, the clip samplers' rule; ``streamer.padded`` > 0)."""
    predictions = list(stream_video(streamer, path))
    if not predictions:
        predictions.append(streamer.pad_until_output())  # type: ignore[arg-type]
    return predictions
