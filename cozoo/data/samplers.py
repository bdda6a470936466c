"""Clip samplers: which frame indices of a video make up a clip.

A clip is ``frames`` frames taken every ``sampling_rate`` frames, so it spans
``(frames - 1) * sampling_rate + 1`` frames of the video. Short videos: when a video has fewer frames
than the span, the clip starts at frame 0 and every index past the end is replaced by the last frame
(the last frame is repeated), so a clip always has exactly ``frames`` indices, all valid.

Indices count frames of the video. To sample by time instead (the reference implementations' way for
videos of mixed frame rates), sample on a ``target_fps`` timeline of `resampled_length` frames and map
the indices back with `to_video_frames`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cozoo.timeline import video_frame_at


def clip_span(frames: int, sampling_rate: int) -> int:
    """Number of video frames covered by one clip."""
    _check_clip(frames, sampling_rate)
    return (frames - 1) * sampling_rate + 1


def clip_indices(start: int, frames: int, sampling_rate: int, num_video_frames: int) -> list[int]:
    """Indices ``start, start + rate, ...`` clamped to the last frame of the video."""
    _check_clip(frames, sampling_rate)
    if num_video_frames < 1:
        raise ValueError(f"video has no frames (num_video_frames={num_video_frames})")
    if not 0 <= start < num_video_frames:
        raise ValueError(f"clip start {start} outside the video's {num_video_frames} frames")
    return [min(start + i * sampling_rate, num_video_frames - 1) for i in range(frames)]


def _check_clip(frames: int, sampling_rate: int) -> None:
    if frames < 1 or sampling_rate < 1:
        raise ValueError(f"frames and sampling_rate must be >= 1, got {frames} and {sampling_rate}")


def resampled_length(num_video_frames: int, video_fps: float, target_fps: float) -> int:
    """How many instants ``0, 1/target_fps, 2/target_fps, ...`` fall within a video of
    ``num_video_frames`` frames at ``video_fps`` (at least 1): its length on a ``target_fps`` timeline."""
    _check_rates(video_fps, target_fps)
    return max(1, math.ceil(num_video_frames * target_fps / video_fps - 1e-6))


def to_video_frames(
    indices: list[int], video_fps: float, target_fps: float, num_video_frames: int
) -> list[int]:
    """The video frame on screen at each instant ``index / target_fps``: the clip samplers' indices on a
    ``target_fps`` timeline, as frames of a video at ``video_fps`` (identity when the rates are equal)."""
    _check_rates(video_fps, target_fps)
    return [min(video_frame_at(i, video_fps, target_fps), num_video_frames - 1) for i in indices]


def _check_rates(video_fps: float, target_fps: float) -> None:
    if not (video_fps > 0 and target_fps > 0):
        raise ValueError(f"frame rates must be positive, got video {video_fps} and target {target_fps}")


def max_start(num_video_frames: int, frames: int, sampling_rate: int) -> int:
    """Largest start index for which the whole clip fits in the video (0 when the video is too short)."""
    return max(num_video_frames - clip_span(frames, sampling_rate), 0)


@dataclass(frozen=True)
class RandomClipSampler:
    """Training: one clip per video, its start drawn uniformly from all starts where the clip fits.

    Randomness comes from ``generator`` or, when None, torch's global generator (which DataLoader workers
    seed differently per worker).
    """

    frames: int
    sampling_rate: int
    clips_per_video: int = 1

    def __post_init__(self) -> None:
        _check_clip(self.frames, self.sampling_rate)
        if self.clips_per_video != 1:
            raise ValueError("RandomClipSampler draws exactly one clip per video")

    def __call__(
        self, num_video_frames: int, clip_index: int = 0, generator: torch.Generator | None = None
    ) -> list[int]:
        high = max_start(num_video_frames, self.frames, self.sampling_rate)
        start = int(torch.randint(0, high + 1, (1,), generator=generator))
        return clip_indices(start, self.frames, self.sampling_rate, num_video_frames)


@dataclass(frozen=True)
class UniformClipSampler:
    """Testing: ``clips_per_video`` clips with evenly spaced starts from the first to the last fitting start.

    Clip ``k`` of ``K`` starts at ``round(k * max_start / (K - 1))``; a single clip is the centre clip
    (``max_start // 2``). Deterministic.
    """

    frames: int
    sampling_rate: int
    clips_per_video: int = 1

    def __post_init__(self) -> None:
        _check_clip(self.frames, self.sampling_rate)
        if self.clips_per_video < 1:
            raise ValueError(f"clips_per_video must be >= 1, got {self.clips_per_video}")

    def start(self, num_video_frames: int, clip_index: int) -> int:
        if not 0 <= clip_index < self.clips_per_video:
            raise ValueError(f"clip_index {clip_index} outside 0..{self.clips_per_video - 1}")
        high = max_start(num_video_frames, self.frames, self.sampling_rate)
        if self.clips_per_video == 1:
            return high // 2
        return round(clip_index * high / (self.clips_per_video - 1))

    def __call__(
        self, num_video_frames: int, clip_index: int = 0, generator: torch.Generator | None = None
    ) -> list[int]:
        start = self.start(num_video_frames, clip_index)
        return clip_indices(start, self.frames, self.sampling_rate, num_video_frames)


ClipSampler = RandomClipSampler | UniformClipSampler
