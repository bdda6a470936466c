"""Model registry in the style of timm: a config per variant, `create_model`, `list_models`, `model_info`.

Each family module under `cozoo/models/` calls `register_model(ModelConfig(...))` at import time.
Published figures (accuracy, GFLOPs, checkpoint source) live in `weights_manifest.json` and are merged
into `model_info` by name.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import operator
import os
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


def _ensure_loaded() -> None:
    """Import the family modules so their registrations run."""
    import cozoo.models  # noqa: F401


def get_config(name: str) -> ModelConfig:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.4)
        hint = f"; closest matches: {', '.join(close)}" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint}. All names: `cozoo models` or cozoo.list_models()."
        ) from None


def list_models(pattern: str = "*", pretrained: bool | None = None) -> list[str]:
    """Sorted registered names matching a shell-style wildcard (e.g. ``"*x3d*"``; case-insensitive).

    ``pretrained=True`` keeps only names with a published checkpoint in the manifest,
    ``pretrained=False`` only those without; ``None`` keeps all.
    """
    _ensure_loaded()
    names = sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern.lower()))
    if pretrained is None:
        return names
    from cozoo.weights.manifest import has_pretrained

    return [n for n in names if has_pretrained(n) == pretrained]


def model_info(name: str) -> dict[str, Any]:
    """The variant's config merged with its manifest entry (published figures, weights source); for
    continual models also its schedule (receptive field, padding, delay, first output step, stride)."""
    config = get_config(name)
    info = config.as_dict()
    from cozoo.weights.manifest import manifest_entry, published_figures

    info["weights"] = manifest_entry(name)
    info["published"] = published_figures(name)
    if config.continual:
        model = create_model(name)
        info["schedule"] = {
            "receptive_field": model.receptive_field,
            "temporal_padding": model.temporal_padding,
            "delay": model.delay,
            "first_output": model.first_output,
            "stride": model.stride,
        }
    return info


def create_model(
    name: str, pretrained: bool | str = False, num_classes: int | None = None, **kwargs: Any
) -> nn.Module:
    """Build a registered model.

    ``pretrained=True`` loads the published checkpoint (downloaded and cached, see `cozoo.weights`);
    a string is a path to a checkpoint file. ``num_classes`` different from the checkpoint's resets
    only the classifier (a freshly initialised final linear layer); all other weights are kept.
    Extra keyword arguments go to the builder (e.g. ``pool_window=64`` for continual variants).
    """
    config = get_config(name)
    num_classes = _class_count(num_classes)
    pretrained = False if pretrained is None else pretrained
    path_like = isinstance(pretrained, str | os.PathLike) and os.fspath(pretrained) != ""
    if not isinstance(pretrained, bool) and not path_like:
        raise ValueError(f"pretrained must be True/False or a checkpoint path, got {pretrained!r}")
    build_kwargs = {**config.builder_kwargs, **kwargs}
    model = config.builder(num_classes=config.num_classes, **build_kwargs)
    if pretrained:
        from cozoo.weights.converters import CheckpointMismatchError
        from cozoo.weights.load import load_pretrained

        try:
            load_pretrained(model, config, None if pretrained is True else os.fspath(pretrained))
        except CheckpointMismatchError as err:
            changed = {k: v for k, v in kwargs.items() if k not in ("pool_window", "cache")}
            if not changed:
                raise
            raise CheckpointMismatchError(
                f"{err}. The builder arguments {changed} change the architecture from the one the weights "
                "were made for"
            ) from None
    if num_classes is not None and classifier(model)[1].out_features != num_classes:
        reset_classifier(model, num_classes)
    if config.continual and "pool_window" in kwargs:  # the config describes the model as built
        config = dataclasses.replace(config, frames=int(kwargs["pool_window"]))
    if pretrained or num_classes is not None:
        outputs = classifier(model)[1].out_features  # a checkpoint's or the caller's class count
        if outputs != config.num_classes:
            config = dataclasses.replace(config, num_classes=outputs)
    model.cozoo_config = config  # type: ignore[attr-defined]
    return model


def _class_count(num_classes: object) -> int | None:
    """``num_classes`` as an int (any integer type, e.g. numpy's), or an error naming the value."""
    if num_classes is None:
        return None
    try:
        count = None if isinstance(num_classes, bool) else operator.index(num_classes)  # type: ignore[arg-type]
    except TypeError:
        count = None
    if count is None or count < 1:
        raise ValueError(f"num_classes must be a whole number of at least 1, got {num_classes!r}")
    return count


def classifier(model: nn.Module) -> tuple[str, nn.Linear]:
    """The qualified name and module of the model's classifier (its last ``nn.Linear``)."""
    last_name, last = None, None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name, last = module_name, module
    if last is None or last_name is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier")
    return last_name, last


def reset_classifier(model: nn.Module, num_classes: int) -> None:
    """Replace the last ``nn.Linear`` of a model by a fresh one with ``num_classes`` outputs."""
    last_name, last = classifier(model)
    parent = model.get_submodule(last_name.rpartition(".")[0]) if "." in last_name else model
    new = nn.Linear(last.in_features, num_classes, bias=last.bias is not None)
    new.__class__ = type(last)  # keeps a continual linear layer continual
    new.to(device=last.weight.device, dtype=last.weight.dtype)
    setattr(parent, last_name.rpartition(".")[2], new)
