"""Building models by name, as timm's ``_factory``: registry config + family builder + published weights
(+ conversion for continual variants, which their builders do).

The top of the model stack: it imports the registry, the families (`cozoo.models`, which registers them)
and `cozoo.weights`; nothing below imports it.
"""

from __future__ import annotations

import dataclasses
import operator
import os
from typing import Any

from torch import nn

from cozoo.continual.timing import timing
from cozoo.layers.classifier import class_count, reset_classifier
from cozoo.models import get_config, registry
from cozoo.weights.converters import CheckpointMismatchError
from cozoo.weights.load import load_pretrained
from cozoo.weights.manifest import has_pretrained, manifest_entry, published_figures

__all__ = ["create_model", "get_config", "list_models", "model_info"]


def list_models(pattern: str = "*", pretrained: bool | None = None) -> list[str]:
    """Sorted registered names matching a shell-style wildcard (e.g. ``"*x3d*"``; case-insensitive).

    ``pretrained=True`` keeps only names with a published checkpoint in the manifest,
    ``pretrained=False`` only those without; ``None`` keeps all.
    """
    names = registry.list_models(pattern)
    if pretrained is None:
        return names
    return [n for n in names if has_pretrained(n) == pretrained]



def model_info(name: str) -> dict[str, Any]:
    """The variant's config merged with its manifest entry (published figures, weights source); for
    continual models also its schedule (receptive field, padding, delay, first output step, stride, and the
    source clip length: the frames whose pooled source positions a prediction averages; see
    `cozoo.continual.timing`)."""
    config = get_config(name)
    info = config.as_dict()
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
            "source_clip": timing(model).clip_length,
        }
    return info


def create_model(
    name: str, pretrained: bool | str = False, num_classes: int | None = None, **kwargs: Any
) -> nn.Module:
    """Build a registered model.

    ``pretrained=True`` loads the published checkpoint (downloaded and cached, see `cozoo.weights`);
    a string is a path to a checkpoint file. ``num_classes`` different from the checkpoint's resets
    only the classifier (a freshly initialised final linear layer); all other weights are kept.
    ``num_classes=0`` puts the identity in the classifier's place: the model outputs its pooled features
    (timm's convention; ``model.num_features`` wide). Extra keyword arguments go to the builder (e.g.
    ``pool_window=64`` for continual variants).
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
    if num_classes is not None and class_count(model) != num_classes:
        reset_classifier(model, num_classes)
    if config.continual and "pool_window" in kwargs:  # the config describes the model as built
        config = dataclasses.replace(config, frames=int(kwargs["pool_window"]))
    if pretrained or num_classes is not None:
        outputs = class_count(model)  # a checkpoint's or the caller's class count
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
    if count is None or count < 0:
        raise ValueError(f"num_classes must be a whole number >= 0 (0: features out), got {num_classes!r}")
    return count
