"""Clip transforms: uint8 frames -> normalised float clip, with the resize/crop/flip a model expects.

Functions take a float clip ``(3, T, H, W)``; `to_float_clip` also accepts decoded ``(T, H, W, 3)`` uint8
frames. `train_transform` / `eval_transform` build the standard pipelines from a `cozoo.registry.ModelConfig`
(its crop sizes, mean and std, and its publisher's test geometry: a fixed resize, e.g. torchvision's 128x171,
and how the centre crop's offset is rounded) or from plain arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch
from torch.nn import functional as F

if TYPE_CHECKING:
    from cozoo.models.registry import ModelConfig

# How a centre crop's offset ``(size - crop) / 2`` is rounded when odd: PySlowFast and PyTorchVideo's
# ``uniform_crop`` take the ceiling, torchvision's ``center_crop`` Python's ``round`` (half to even).
CropRounding = Literal["floor", "ceil", "round"]


def to_float_clip(video: torch.Tensor) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 -> ``(3, T, H, W)`` float in [0, 1]; float ``(3, T, H, W)`` passes as is."""
    if video.dtype == torch.uint8:
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames of shape (T, H, W, 3), got {tuple(video.shape)}")
        return video.permute(3, 0, 1, 2).float().div_(255.0)
    if not video.is_floating_point() or video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(
            f"expected uint8 (T, H, W, 3) frames or a float (3, T, H, W) clip, got {video.dtype} "
            f"{tuple(video.shape)}"
        )
    return video


def short_side_resize(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinearly resize every frame so its shorter side is ``size`` (aspect kept, long side floored)."""
    height, width = clip.shape[-2:]
    if size < 1:
        raise ValueError(f"resize size must be >= 1, got {size}")
    if height <= width:
        new_h, new_w = size, int(math.floor(width * size / height))
    else:
        new_h, new_w = int(math.floor(height * size / width)), size
    if (new_h, new_w) == (height, width):
        return clip
    # (3, T, H, W) is read by interpolate as a batch of 3 images with T channels.
    return F.interpolate(clip, size=(new_h, new_w), mode="bilinear", align_corners=False)


def resize_frames(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize every frame to ``size`` = (height, width), whatever its aspect ratio (torchvision's
    video recipe: 128x171)."""
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ValueError(f"resize size must be (height, width) >= 1, got {size}")
    if (height, width) == tuple(clip.shape[-2:]):
        return clip
    return F.interpolate(clip, size=(height, width), mode="bilinear", align_corners=False)


def centre_offset(length: int, size: int, rounding: CropRounding = "floor") -> int:
    """Offset of a centred ``size`` window in ``length``: ``(length - size) / 2`` rounded as ``rounding``."""
    half = (length - size) / 2
    if rounding == "floor":
        return (length - size) // 2
    if rounding == "ceil":
        return math.ceil(half)
    if rounding == "round":
        return int(round(half))
    raise ValueError(f"crop rounding must be one of {get_args(CropRounding)}, got {rounding!r}")


def _check_crop(clip: torch.Tensor, size: int) -> tuple[int, int]:
    height, width = clip.shape[-2:]
    if size > height or size > width:
        raise ValueError(f"crop size {size} is larger than the {height}x{width} frames")
    return height, width


def crop(clip: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """The ``size`` x ``size`` square at ``(top, left)``."""
    return clip[..., top : top + size, left : left + size]


def center_crop(clip: torch.Tensor, size: int, rounding: CropRounding = "floor") -> torch.Tensor:
    """The centred ``size`` square; odd margins split as ``rounding`` says (see `CropRounding`)."""
    height, width = _check_crop(clip, size)
    return crop(clip, centre_offset(height, size, rounding), centre_offset(width, size, rounding), size)


def random_crop(clip: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    height, width = _check_crop(clip, size)
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    return crop(clip, top, left, size)


def three_crop(clip: torch.Tensor, size: int, index: int, rounding: CropRounding = "floor") -> torch.Tensor:
    """Crop ``index`` of the 3-crop test protocol: start (0), centre (1) or end (2) of the longer side."""
    if index not in (0, 1, 2):
        raise ValueError(f"three_crop index must be 0, 1 or 2, got {index}")
    height, width = _check_crop(clip, size)
    if width >= height:
        left = (0, centre_offset(width, size, rounding), width - size)[index]
        return crop(clip, centre_offset(height, size, rounding), left, size)
    top = (0, centre_offset(height, size, rounding), height - size)[index]
    return crop(clip, top, centre_offset(width, size, rounding), size)


def horizontal_flip(clip: torch.Tensor) -> torch.Tensor:
    return clip.flip(-1)


def normalize(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel ``(x - mean) / std`` on a ``(3, T, H, W)`` clip."""
    if len(mean) != clip.shape[0] or len(std) != clip.shape[0]:
        raise ValueError(f"mean/std need {clip.shape[0]} values, got {len(mean)} and {len(std)}")
    mean_t = torch.as_tensor(mean, dtype=clip.dtype).view(-1, 1, 1, 1)
    std_t = torch.as_tensor(std, dtype=clip.dtype).view(-1, 1, 1, 1)
    return (clip - mean_t) / std_t


@dataclass(frozen=True)
class VideoTransform:
    """Resize the short side to a size drawn from ``short_side`` (inclusive range), crop, flip, normalise.

    Training (``training=True``): random short side in the range, random crop, horizontal flip with
    probability 0.5 if ``flip``. Testing: fixed short side, or every frame resized to ``resize`` = (height,
    width) when set (aspect ratio not kept, as torchvision's recipe does), then crop ``crop_index`` of
    ``num_crops`` (1: centre, 3: start/centre/end of the longer side; centre offsets rounded as
    ``crop_rounding``). Disable ``flip`` for classes whose meaning depends on
    left/right (e.g. "moving left" vs "moving right", clockwise vs counter-clockwise rotation).
    """

    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    short_side: tuple[int, int]
    training: bool
    flip: bool = True
    num_crops: int = 1
    resize: tuple[int, int] | None = None
    crop_rounding: CropRounding = "floor"

    def __post_init__(self) -> None:
        centre_offset(0, 0, self.crop_rounding)  # names a bad rounding now, not at the first clip
        if self.resize is not None:
            if self.training:
                raise ValueError("a fixed resize is a test transform's (training jitters the short side)")
            if len(self.resize) != 2 or min(self.resize) < self.crop:
                raise ValueError(f"resize must be (height, width), both >= the crop {self.crop}, got "
                                 f"{self.resize}")
        low, high = self.short_side
        if not 1 <= low <= high:
            raise ValueError(f"short_side must be (low, high) with 1 <= low <= high, got {self.short_side}")
        if low < self.crop:
            raise ValueError(f"short side {low} is smaller than the crop {self.crop}")
        if self.num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {self.num_crops}")
        if self.training and self.num_crops != 1:
            raise ValueError("training transforms take a single random crop (num_crops=1)")

    def __call__(
        self, video: torch.Tensor, crop_index: int = 0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(T, H, W, 3)`` uint8 or ``(3, T, H, W)`` float -> normalised ``(3, T, crop, crop)`` float."""
        clip = to_float_clip(video)
        low, high = self.short_side
        size = int(torch.randint(low, high + 1, (1,), generator=generator)) if self.training else low
        clip = short_side_resize(clip, size) if self.resize is None else resize_frames(clip, self.resize)
        if self.training:
            clip = random_crop(clip, self.crop, generator)
            if self.flip and float(torch.rand((), generator=generator)) < 0.5:
                clip = horizontal_flip(clip)
        elif self.num_crops == 3:
            clip = three_crop(clip, self.crop, crop_index, self.crop_rounding)
        else:
            clip = center_crop(clip, self.crop, self.crop_rounding)
        return normalize(clip.contiguous(), self.mean, self.std)


def _pick(name: str, value: Any, config: ModelConfig | None, attr: str) -> Any:
    if value is not None:
        return value
    if config is None:
        raise ValueError(f"pass a ModelConfig or {name}=...")
    return getattr(config, attr)


def train_transform(
    config: ModelConfig | None = None,
    *,
    crop: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    short_side: tuple[int, int] | None = None,
    flip: bool = True,
) -> VideoTransform:
    """Training pipeline. Default short-side jitter: ``crop * [256, 320] / 224`` (the Kinetics recipe)."""
    crop = int(_pick("crop", crop, config, "train_crop"))
    if short_side is None:
        short_side = (round(crop * 256 / 224), round(crop * 320 / 224))
    return VideoTransform(
        crop=crop,
        mean=tuple(_pick("mean", mean, config, "mean")),
        std=tuple(_pick("std", std, config, "std")),
        short_side=(int(short_side[0]), int(short_side[1])),
        training=True,
        flip=flip,
    )


def eval_transform(
    config: ModelConfig | None = None,
    *,
    crop: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    short_side: int | None = None,
    num_crops: int = 1,
    resize: tuple[int, int] | None = None,
    crop_rounding: CropRounding | None = None,
) -> VideoTransform:
    """Test pipeline: short side to ``short_side`` (or every frame to ``resize`` = (height, width)), then 1
    centre crop or 3 crops. Unless ``crop`` changes the config's test crop or ``short_side`` is given, the
    config's recipe applies: its ``test_resize``, else its ``test_short_side``, else the crop size. The
    centre offset is rounded as ``crop_rounding`` (default: the config's, else floor)."""
    keeps_crop = config is not None and (crop is None or int(crop) == config.test_crop)
    recipe = keeps_crop and short_side is None and resize is None
    configured = config.test_short_side if keeps_crop else None  # type: ignore[union-attr]
    if recipe and config.test_resize is not None:  # type: ignore[union-attr]
        resize = config.test_resize  # type: ignore[union-attr]
    crop = int(_pick("crop", crop, config, "test_crop"))
    short = int(short_side if short_side is not None else configured if configured is not None else crop)
    if crop_rounding is None:
        crop_rounding = config.crop_rounding if config is not None else "floor"
    return VideoTransform(
        crop=crop,
        mean=tuple(_pick("mean", mean, config, "mean")),
        std=tuple(_pick("std", std, config, "std")),
        short_side=(short, short),  # unused under a fixed resize
        training=False,
        num_crops=num_crops,
        resize=None if resize is None else (int(resize[0]), int(resize[1])),
        crop_rounding=crop_rounding,
    )
