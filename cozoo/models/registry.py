"""Model registry in the style of timm's ``_registry``: a config per variant, and look-ups by name.

Pure: it holds configs and loads nothing. Each family module of `cozoo.models` calls
`register_model(ModelConfig(...))` at import time, and importing `cozoo.models` imports them all, so
any import of this module sees the whole zoo. Building models by name is `cozoo.factory`'s job.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a variant and feed it correctly preprocessed clips."""

    name: str
    family: str
    builder: Callable[..., nn.Module]
    frames: int
    sampling_rate: int
    train_crop: int
    test_crop: int
    num_classes: int = 400
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    dataset: str = "kinetics400"
    builder_kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    # Name of the regular model this continual variant is transferred from (None for regular models).
    source: str | None = None
    # Short side a test clip is resized to before its centre crop (None: the test crop itself).
    test_short_side: int | None = None
    # Clips sampled by time on a timeline at this frame rate (None: by frame index, whatever the rate).
    target_fps: float | None = None
    # Every test frame resized to (height, width) before the crop, aspect ratio not kept (torchvision's
    # recipe); None: short side to ``test_short_side``.
    test_resize: tuple[int, int] | None = None
    # How the centre crop's offset is rounded on odd margins (`cozoo.data.transforms.CropRounding`):
    # "ceil" is PySlowFast/PyTorchVideo's uniform_crop, "round" torchvision's center_crop.
    crop_rounding: str = "ceil"

    @property
    def continual(self) -> bool:
        return self.source is not None

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("builder")
        out["continual"] = self.continual
        return out


_REGISTRY: dict[str, ModelConfig] = {}


class UnknownModelError(KeyError):
    """Raised for a model name that is not registered; the message lists the closest matches."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def register_model(config: ModelConfig) -> ModelConfig:
    if config.name in _REGISTRY:
        raise ValueError(f"model {config.name!r} is registered twice")
    _REGISTRY[config.name] = config
    return config


def get_config(name: str) -> ModelConfig:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.4)
        hint = f"; closest matches: {', '.join(close)}" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint}. All names: `cozoo models` or cozoo.list_models()."
        ) from None


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered names matching a shell-style wildcard (e.g. ``"*x3d*"``; case-insensitive)."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern.lower()))
