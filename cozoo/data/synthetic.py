"""Synthetic motion videos whose classes can only be told apart by temporal order.

Classes come in pairs that are time reversals of each other: "moving_right" played backwards is
"moving_left", "growing" backwards is "shrinking", "rotating_cw" backwards is "rotating_ccw"
(likewise "moving_down"/"moving_up"). Any single frame is consistent with both classes of a pair, so a
model has to use frame order. Each video has a random background and shape colour, position, size,
speed and pixel noise, all drawn from a seed. Left/right and clockwise/counter-clockwise pairs also swap
under a horizontal flip: train on them with flipping disabled.

`generate_synthetic_dataset` writes real H.264 MP4s and annotation CSVs in the Kinetics layout;
`write_synthetic_stream` writes one long video of consecutive motions for streaming demos.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cozoo.data.kinetics import VideoRecord, write_annotations
from cozoo.data.video import PathLike, write_video

# class -> (motion, played backwards). The backwards member of each pair is the time reversal of the other.
_MOTIONS: dict[str, tuple[str, bool]] = {
    "moving_right": ("translate_x", False),
    "moving_left": ("translate_x", True),
    "moving_down": ("translate_y", False),
    "moving_up": ("translate_y", True),
    "growing": ("scale", False),
    "shrinking": ("scale", True),
    "rotating_cw": ("rotate", False),
    "rotating_ccw": ("rotate", True),
}
SYNTHETIC_CLASSES: tuple[str, ...] = tuple(_MOTIONS)
DEFAULT_CLASSES: tuple[str, ...] = (
    "moving_left", "moving_right", "growing", "shrinking", "rotating_cw", "rotating_ccw"
)


def flipped_class(label: str) -> str:
    """The class whose videos are ``label``'s videos flipped left-right (itself where a flip keeps it)."""
    motion, backwards = _check_class(label)
    if motion not in ("translate_x", "rotate"):
        return label
    return next(name for name, spec in _MOTIONS.items() if spec == (motion, not backwards))


def reversed_class(label: str) -> str:
    """The class whose videos are ``label``'s videos played backwards."""
    motion, backwards = _check_class(label)
    return next(name for name, spec in _MOTIONS.items() if spec == (motion, not backwards))


def _check_class(label: str) -> tuple[str, bool]:
    if label not in _MOTIONS:
        raise ValueError(f"unknown synthetic class {label!r}; choose from {', '.join(SYNTHETIC_CLASSES)}")
    return _MOTIONS[label]


def _size_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else size
    if height < 16 or width < 16 or height % 2 or width % 2:
        raise ValueError(f"video size must be even and >= 16 (H.264 yuv420p), got {height}x{width}")
    return height, width


def _rect_coverage(
    ys: np.ndarray, xs: np.ndarray, centre: tuple[float, float], half: tuple[float, float], angle: float
) -> np.ndarray:
    """Soft (1-pixel anti-aliased) coverage of a rectangle rotated by ``angle`` (clockwise on screen)."""
    dy, dx = ys - centre[0], xs - centre[1]
    along = dx * math.cos(angle) + dy * math.sin(angle)
    across = -dx * math.sin(angle) + dy * math.cos(angle)
    cover_a = np.clip(half[1] - np.abs(along) + 0.5, 0.0, 1.0)
    cover_b = np.clip(half[0] - np.abs(across) + 0.5, 0.0, 1.0)
    return cover_a * cover_b


def render_clip(
    label: str, frames: int = 32, size: int | tuple[int, int] = 64, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """Render one video of class ``label`` as ``(T, H, W, 3)`` uint8 RGB frames.

    For the same ``seed``, ``render_clip(reversed_class(c), ...)`` is exactly ``render_clip(c, ...)[::-1]``.
    """
    motion, backwards = _check_class(label)
    if frames < 2:
        raise ValueError(f"a motion needs at least 2 frames, got {frames}")
    height, width = _size_hw(size)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    short = min(height, width)
    background = rng.uniform(0, 255, size=3)
    foreground = rng.uniform(0, 255, size=3)
    while np.abs(foreground - background).mean() < 80:
        foreground = rng.uniform(0, 255, size=3)
    noise_std = rng.uniform(0.0, 8.0)
    progress = np.linspace(0.0, 1.0, frames)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)

    side = rng.uniform(0.15, 0.3) * short
    if motion in ("translate_x", "translate_y"):
        extent = width if motion == "translate_x" else height
        travel = rng.uniform(0.35, 1.0) * (extent - side)
        start = rng.uniform(side / 2, extent - side / 2 - travel)
        across_extent = height if motion == "translate_x" else width
        fixed = rng.uniform(side / 2, across_extent - side / 2)
        paths = [(fixed, start + travel * t) if motion == "translate_x" else (start + travel * t, fixed)
                 for t in progress]
        shapes = [(centre, (side / 2, side / 2), 0.0) for centre in paths]
    elif motion == "scale":
        small, large = rng.uniform(0.08, 0.15) * short, rng.uniform(0.45, 0.7) * short
        centre = (rng.uniform(large / 2, height - large / 2), rng.uniform(large / 2, width - large / 2))
        shapes = [(centre, ((small + (large - small) * t) / 2,) * 2, 0.0) for t in progress]
    else:  # rotate: a bar turning clockwise (on screen, y pointing down) by a random total angle
        length, thickness = rng.uniform(0.5, 0.8) * short, rng.uniform(0.08, 0.14) * short
        centre = (height / 2 + rng.uniform(-0.1, 0.1) * short, width / 2 + rng.uniform(-0.1, 0.1) * short)
        first, turn = rng.uniform(0, math.pi), rng.uniform(0.5, 1.0) * math.pi
        shapes = [(centre, (thickness / 2, length / 2), first + turn * t) for t in progress]

    noise = rng.normal(0.0, noise_std, size=(frames, height, width, 3))
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    for index, (centre, half, angle) in enumerate(shapes):
        cover = _rect_coverage(ys, xs, centre, half, angle)[..., None]
        image = background * (1.0 - cover) + foreground * cover + noise[index]
        video[index] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return video[::-1].copy() if backwards else video


def write_synthetic_video(
    path: PathLike,
    label: str,
    frames: int = 32,
    size: int | tuple[int, int] = 64,
    seed: int = 0,
    fps: float = 15.0,
) -> Path:
    """Render one video of class ``label`` and write it as an H.264 MP4."""
    return write_video(path, render_clip(label, frames, size, seed), fps)


def write_synthetic_stream(
    path: PathLike,
    segments: Sequence[tuple[str, int]],
    size: int | tuple[int, int] = 64,
    seed: int = 0,
    fps: float = 15.0,
) -> tuple[Path, list[str]]:
    """Write one video made of consecutive motion segments ``[(class, frames), ...]`` for streaming demos.

    Each segment is an independent random video of its class. Returns the path and the ground-truth
    class of every frame.
    """
    if not segments:
        raise ValueError("write_synthetic_stream: no segments")
    rng = np.random.default_rng(seed)
    parts = [render_clip(label, frames, size, rng) for label, frames in segments]
    labels = [label for label, frames in segments for _ in range(frames)]
    return write_video(path, np.concatenate(parts), fps), labels


@dataclass(frozen=True)
class SyntheticPaths:
    """Where `generate_synthetic_dataset` wrote things."""

    root: Path
    video_root: Path
    train_csv: Path
    val_csv: Path
    class_file: Path
    classes: tuple[str, ...]


def generate_synthetic_dataset(
    root: PathLike,
    classes: Sequence[str] = DEFAULT_CLASSES,
    videos_per_class: int = 8,
    val_videos_per_class: int = 2,
    frames: int = 32,
    size: int | tuple[int, int] = 64,
    fps: float = 15.0,
    seed: int = 0,
    layout: str = "nested",
) -> SyntheticPaths:
    """Write a synthetic dataset in the Kinetics layout under ``root``; deterministic from ``seed``.

    Writes ``videos/<split>/<label>/<ytid>_000000_<end:06d>.mp4`` (``layout="nested"``) or
    ``videos/<file>.mp4`` (``layout="flat"``), ``train.csv`` and ``val.csv`` (Kinetics columns) and
    ``classes.txt``. A video's content depends only on ``seed``, its split, class and number, so adding
    classes or videos leaves the others unchanged.
    """
    if layout not in ("nested", "flat"):
        raise ValueError(f"layout must be 'nested' or 'flat', got {layout!r}")
    classes = tuple(classes)
    for label in classes:
        _check_class(label)
    if len(set(classes)) != len(classes):
        raise ValueError(f"duplicate classes in {classes}")
    if videos_per_class < 1 or val_videos_per_class < 0:
        raise ValueError("videos_per_class must be >= 1 and val_videos_per_class >= 0")
    root = Path(root)
    video_root = root / "videos"
    time_end = max(1, math.ceil(frames / fps))
    csv_paths = {}
    for split_code, (split, count) in enumerate((("train", videos_per_class), ("val", val_videos_per_class))):
        records = []
        for label in classes:
            class_code = SYNTHETIC_CLASSES.index(label)
            for number in range(count):
                record = VideoRecord(label, f"{split[0]}{class_code:03d}v{number:06d}", 0, time_end, split)
                folder = video_root / split / label if layout == "nested" else video_root
                rng = np.random.default_rng([seed, split_code, class_code, number])
                write_video(folder / record.filename, render_clip(label, frames, size, rng), fps)
                records.append(record)
        csv_paths[split] = write_annotations(root / f"{split}.csv", records)
    class_file = root / "classes.txt"
    class_file.write_text("".join(f"{label}\n" for label in classes), encoding="utf-8")
    return SyntheticPaths(root, video_root, csv_paths["train"], csv_paths["val"], class_file, classes)
