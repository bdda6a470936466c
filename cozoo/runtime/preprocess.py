"""Frames for an exported step, in numpy: decoding as `cozoo.data.video` does and the per-frame test
transform of `cozoo.inference.video.FrameTransform` (short side resized bilinearly as ``torch.nn.functional.
interpolate(mode="bilinear", align_corners=False)`` does, no antialiasing; centre crop; /255; mean/std).

Torch-free on purpose (`cozoo.runtime` runs without PyTorch); the tests hold it equal to the torch code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import av
import numpy as np


def _axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (lower, upper) and the upper weight of each output pixel along one axis (PyTorch's
    half-pixel rule, source positions clamped at 0)."""
    scale = np.float32(in_size / out_size)
    source = np.maximum((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5),
                        np.float32(0))
    lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    weight = np.clip(source - lower.astype(np.float32), 0, 1).astype(np.float32)
    return lower, upper, weight


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(C, H, W)`` float32 -> ``(C, height, width)``, bilinear with half-pixel centres."""
    top, bottom, wy = _axis_weights(image.shape[1], height)
    left, right, wx = _axis_weights(image.shape[2], width)
    rows = image[:, top] * (1 - wy)[:, None] + image[:, bottom] * wy[:, None]
    return (rows[:, :, left] * (1 - wx) + rows[:, :, right] * wx).astype(np.float32)


@dataclass(frozen=True)
class FramePreprocessor:
    """One decoded ``(H, W, 3)`` uint8 RGB frame -> the model's input ``(1, 3, crop, crop)`` float32."""

    crop: int
    short_side: int
    mean: Sequence[float]
    std: Sequence[float]

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if (not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3
                or frame.shape[2] != 3):
            got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ValueError(f"expected a uint8 RGB frame of shape (H, W, 3), got {got}")
        image = frame.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
        height, width = image.shape[1:]
        size = self.short_side
        if height <= width:
            new_h, new_w = size, int(math.floor(width * size / height))
        else:
            new_h, new_w = int(math.floor(height * size / width)), size
        if (new_h, new_w) != (height, width):
            image = resize_bilinear(image, new_h, new_w)
        if self.crop > new_h or self.crop > new_w:
            raise ValueError(f"crop size {self.crop} is larger than the {new_h}x{new_w} frames")
        top, left = (new_h - self.crop) // 2, (new_w - self.crop) // 2
        image = image[:, top : top + self.crop, left : left + self.crop]
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return np.ascontiguousarray(((image - mean) / std)[None])


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count (as the container declares it, else counted) and frame rate of a video's first stream."""
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        frames = stream.frames or sum(1 for p in container.demux(stream) if p.size > 0)
    return VideoInfo(int(frames), float(rate) if rate else 0.0)


def iter_rgb_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Decoded frames as upright ``(H, W, 3)`` uint8 RGB arrays, all of the first frame's size."""
    with _open(path) as container:
        size = None
        for frame in container.decode(container.streams.video[0]):
            if size is None:
                size = (frame.width, frame.height)
            if (frame.width, frame.height) == size:
                image = frame.to_ndarray(format="rgb24")
            else:
                image = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
            turns = round(getattr(frame, "rotation", 0) / 90) % 4  # counterclockwise, display matrix
            yield np.ascontiguousarray(np.rot90(image, turns)) if turns else image


class _open:
    """``av.open`` of a video file with a clear error for a missing or unreadable one."""

    def __init__(self, path: str | os.PathLike) -> None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"video file not found: {os.fspath(path)!r}")
        try:
            self.container = av.open(os.fspath(path))
        except (av.FFmpegError, OSError) as err:
            raise ValueError(f"cannot decode video {os.fspath(path)!r}: {err}") from err
        if not self.container.streams.video:
            self.container.close()
            raise ValueError(f"cannot decode video {os.fspath(path)!r}: no video stream")
        self.container.streams.video[0].thread_type = "AUTO"

    def __enter__(self) -> av.container.InputContainer:
        return self.container

    def __exit__(self, *exc: object) -> None:
        self.container.close()
