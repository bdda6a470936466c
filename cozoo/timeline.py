"""Which video frames a model steps on: the one frame-rate rule of clip sampling, `cozoo stream` and the
torch-free ONNX runner (`cozoo.runtime`), kept free of torch so all three can share it.

A model takes every ``sampling_rate``-th frame of a video. With a ``target_fps`` (the reference recipes'
timeline for videos of mixed frame rates) and a video whose rate differs from it by at least 0.001 fps,
it takes the frame on screen at the instants ``k * sampling_rate / target_fps`` instead.
"""

from __future__ import annotations

import math


def samples_by_time(video_fps: float | None, target_fps: float | None) -> bool:
    """Whether a video is sampled on a ``target_fps`` timeline: a target is set, the video's rate is known
    and differs from it by at least 0.001 fps (nearer rates are sampled by frame index)."""
    return target_fps is not None and bool(video_fps) and abs(video_fps - target_fps) >= 1e-3  # type: ignore[operator]


def video_frame_at(index: float, video_fps: float, target_fps: float) -> int:
    """The video frame on screen at instant ``index / target_fps`` (unclamped)."""
    return math.floor(index * video_fps / target_fps + 1e-6)


def frames_per_step(sampling_rate: int, fps: float | None, target_fps: float | None) -> float:
    """Video frames between consecutive model steps (``sampling_rate``, rescaled when by time)."""
    if not samples_by_time(fps, target_fps):
        return float(sampling_rate)
    return sampling_rate * fps / target_fps  # type: ignore[operator]


def step_frame(step: int, sampling_rate: int, fps: float | None, target_fps: float | None) -> int:
    """The video frame model step ``step`` takes (on the ``target_fps`` timeline: the frame on screen)."""
    if not samples_by_time(fps, target_fps):
        return step * sampling_rate
    return video_frame_at(step * sampling_rate, fps, target_fps)  # type: ignore[arg-type]


def steps_at_frame(index: int, sampling_rate: int, fps: float | None, target_fps: float | None) -> int:
    """How many model steps take video frame ``index`` (of a video at ``fps``): the instants
    ``k * sampling_rate / target_fps`` (k = 0, 1, ...) at which it is on screen, or every
    ``sampling_rate``-th frame by index (`samples_by_time` decides which)."""
    if not samples_by_time(fps, target_fps):
        return int(index % sampling_rate == 0)
    step = frames_per_step(sampling_rate, fps, target_fps)
    # step k takes frame floor(k * step) (`step_frame`, with `video_frame_at`'s tolerance)
    first = math.ceil((index - 1e-6) / step)
    end = math.ceil((index + 1 - 1e-6) / step)
    return max(end - first, 0)


class StepTimeline:
    """The rule as seen by a streamer that holds ``sampling_rate``, ``target_fps`` and the ``fps`` of the
    video it is fed (set per video): `cozoo.inference.VideoStreamer` and the ONNX runner's streamer."""

    sampling_rate: int
    fps: float | None
    target_fps: float | None

    @property
    def by_time(self) -> bool:
        """Whether steps are taken by time (`samples_by_time`, as clips are)."""
        return samples_by_time(self.fps, self.target_fps)

    @property
    def frames_per_step(self) -> float:
        """Video frames between consecutive model steps (`frames_per_step`)."""
        return frames_per_step(self.sampling_rate, self.fps, self.target_fps)

    def video_frame(self, step: int) -> int:
        """The video frame model step ``step`` takes (`step_frame`)."""
        return step_frame(step, self.sampling_rate, self.fps, self.target_fps)

    def _steps_at(self, index: int) -> int:
        return steps_at_frame(index, self.sampling_rate, self.fps, self.target_fps)
