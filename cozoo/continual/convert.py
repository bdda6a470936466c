"""`to_continual`: turn a regular module tree into its continual counterpart, sharing its weights.

Converters are registered per source type with `register_continual`; the built-in ones cover the layers
that cozoo's model families are made of. An unknown module type raises an error naming it.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from torch.nn.utils import parametrize

from cozoo.continual.base import ContinualModule
from cozoo.continual.containers import CoIdentity, CoResidual, CoSequential
from cozoo.continual.conv import CacheForm, CoConv3d, check_cache_form
from cozoo.continual.heads import CoVideoClassifier
from cozoo.continual.pool import CoAvgPool3d, CoGlobalAvgPool3d, CoMaxPool3d
from cozoo.continual.stateless import (
    CoFlatten,
    CoLinear,
    CoPerFrame,
    CoSqueezeExcitation,
    CoWindowMean,
    as_per_frame,
)
from cozoo.layers import blocks
from cozoo.layers.heads import VideoClassifier


@dataclass(frozen=True)
class ConversionOptions:
    cache: CacheForm = "auto"


Converter = Callable[[nn.Module, ConversionOptions], nn.Module]
_CONVERTERS: dict[type[nn.Module], Converter] = {}

_PER_FRAME_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm3d, nn.ReLU, nn.SiLU, nn.Sigmoid, nn.Dropout, nn.GELU, nn.Hardswish,
    nn.Hardsigmoid, nn.LeakyReLU, nn.ELU, nn.Tanh, nn.ReLU6, nn.Dropout3d,
)


def register_continual(source_type: type[nn.Module]) -> Callable[[Converter], Converter]:
    """Register ``fn(module, options) -> continual module`` as the converter for ``source_type``."""

    def decorate(fn: Converter) -> Converter:
        _CONVERTERS[source_type] = fn
        return fn

    return decorate


def convert_module(module: nn.Module, options: ConversionOptions) -> nn.Module:
    """Convert one module (recursively); used by container converters for their children.

    A subclass of a supported layer converts as that layer only if it does not change what the layer
    computes (no ``forward`` of its own); parametrised weights and hooks are refused, as step mode would
    bypass them. The converted module keeps the source's training flag."""
    if isinstance(module, ContinualModule):
        return module
    _check_convertible(module)
    for cls in type(module).__mro__:
        if cls in _CONVERTERS:
            converted = _CONVERTERS[cls](module, options)
        elif cls in _PER_FRAME_TYPES:
            converted = as_per_frame(module)
        else:
            if "forward" in vars(cls):
                break  # a class that defines its own forward, with no converter: not ours to guess
            continue
        converted.training = module.training
        return converted
    raise TypeError(
        f"no continual counterpart for {_name(type(module))}; "
        "register one with cozoo.continual.register_continual"
    )


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_convertible(module: nn.Module) -> None:
    """Refuse what a converter would silently drop: parametrised weights and hooks."""
    if parametrize.is_parametrized(module):
        raise TypeError(
            f"{_name(type(module))} has parametrised tensors ({', '.join(module.parametrizations)}), "
            "which step mode would not apply: bake them in first with "
            "torch.nn.utils.parametrize.remove_parametrizations(module, name)"
        )
    if module._forward_hooks or module._forward_pre_hooks:
        raise TypeError(
            f"{_name(type(module))} has forward hooks (e.g. the old torch.nn.utils.weight_norm), which step "
            "mode would not run: remove them before converting"
        )


def to_continual(module: nn.Module, pool_window: int | None = None, cache: CacheForm = "auto") -> nn.Module:
    """A continual copy of ``module`` (the source is left untouched; weights are copied).

    ``pool_window`` is the global average pool's temporal window in *input frames* (it must be a
    multiple of the temporal stride in front of the pool). It defaults to the clip length of the
    registered config (``module.cozoo_config.frames``) when there is one.
    """
    check_cache_form(cache)
    options = ConversionOptions(cache=cache)
    source = copy.deepcopy(module)
    continual = convert_module(source, options)
    continual.bind_schedule()  # type: ignore[attr-defined]
    if any(isinstance(m, CoGlobalAvgPool3d) for m in continual.modules()):
        config = getattr(module, "cozoo_config", None)
        frames = pool_window if pool_window is not None else getattr(config, "frames", None)
        if frames is None:
            raise ValueError("the model has a global average pool: pass pool_window=<frames> to to_continual")
        configure_pool_window(continual, frames)
    return continual


def check_pool_window(frames: object) -> None:
    """Refuse a pool window that is not a whole number of frames >= 1."""
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"pool_window must be a positive whole number of frames, got {frames!r}")


def configure_pool_window(model: nn.Module, frames: int) -> None:
    """Set every global average pool's window to span ``frames`` input frames of ``model`` (this resets
    the model: a stream's pooled state has the old window's length)."""
    check_pool_window(frames)
    model.reset()  # type: ignore[attr-defined]
    model.bind_schedule()  # type: ignore[attr-defined]
    for pool in model.modules():
        if isinstance(pool, CoGlobalAvgPool3d):
            if frames % pool.input_stride:
                raise ValueError(
                    f"pool window of {frames} frames is not a multiple of the stride {pool.input_stride}"
                )
            pool.window = frames // pool.input_stride
    model.bind_schedule()  # type: ignore[attr-defined]


@register_continual(nn.Conv3d)
def _conv3d(module: nn.Module, options: ConversionOptions) -> nn.Module:
    return CoConv3d(module, cache=options.cache)  # type: ignore[arg-type]


@register_continual(nn.MaxPool3d)
def _max_pool3d(module: nn.Module, options: ConversionOptions) -> nn.Module:
    return CoMaxPool3d(module)  # type: ignore[arg-type]


@register_continual(nn.AvgPool3d)
def _avg_pool3d(module: nn.Module, options: ConversionOptions) -> nn.Module:
    return CoAvgPool3d(module)  # type: ignore[arg-type]


@register_continual(blocks.GlobalAvgPool3d)
def _global_pool(module: nn.Module, options: ConversionOptions) -> nn.Module:
    return CoGlobalAvgPool3d(window=1)


@register_continual(blocks.WindowAvgPool3d)
def _window_pool(module: nn.Module, options: ConversionOptions) -> nn.Module:
    return CoGlobalAvgPool3d(window=1, source=module)  # type: ignore[arg-type]


@register_continual(nn.AdaptiveAvgPool3d)
def _adaptive_pool(module: nn.Module, options: ConversionOptions) -> nn.Module:
    size = module.output_size  # type: ignore[attr-defined]
    if size not in (1, (1, 1, 1)):
        raise TypeError(f"AdaptiveAvgPool3d({size}) has no continual form; only global pooling (1) does")
    return CoGlobalAvgPool3d(window=1)


@register_continual(nn.Softmax)
@register_continual(nn.LogSoftmax)
def _softmax(module: nn.Module, options: ConversionOptions) -> nn.Module:
    dim = module.dim  # type: ignore[attr-defined]
    if dim != 1:
        raise TypeError(
            f"{type(module).__name__}(dim={dim}) has no continual form: only dim=1 (channels or classes) "
            "means the same in clip mode (N, C, T, ...) and step mode (N, C, ...); use dim=1"
        )
    return as_per_frame(module)


@register_continual(nn.Identity)
def _identity(module: nn.Module, options: ConversionOptions) -> nn.Module:
    return CoIdentity()


@register_continual(nn.Sequential)
def _sequential(module: nn.Module, options: ConversionOptions) -> nn.Module:
    children = module.named_children()
    return CoSequential(OrderedDict((name, convert_module(child, options)) for name, child in children))


@register_continual(VideoClassifier)
def _video_classifier(module: nn.Module, options: ConversionOptions) -> nn.Module:
    children = OrderedDict((name, convert_module(child, options)) for name, child in module.named_children())
    return CoVideoClassifier(children, module.head_start, module.classifier_name,  # type: ignore[arg-type]
                             module.num_features)  # type: ignore[arg-type]


@register_continual(blocks.Residual)
def _residual(module: nn.Module, options: ConversionOptions) -> nn.Module:
    def maybe(child: nn.Module | None) -> nn.Module | None:
        return None if child is None else convert_module(child, options)

    return CoResidual(maybe(module.branch), maybe(module.shortcut), maybe(module.activation))  # type: ignore[arg-type]


def _swap_class(cls: type[nn.Module]) -> Converter:
    def convert(module: nn.Module, options: ConversionOptions) -> nn.Module:
        module.__class__ = cls
        return module

    return convert


register_continual(nn.Linear)(_swap_class(CoLinear))
register_continual(blocks.Flatten)(_swap_class(CoFlatten))
register_continual(blocks.SqueezeExcitation)(_swap_class(CoSqueezeExcitation))
register_continual(blocks.PerFrame)(_swap_class(CoPerFrame))
register_continual(blocks.WindowMean)(_swap_class(CoWindowMean))


@register_continual(nn.Flatten)
def _flatten(module: nn.Module, options: ConversionOptions) -> nn.Module:
    if (module.start_dim, module.end_dim) != (1, -1):  # type: ignore[attr-defined]
        raise TypeError("only nn.Flatten(start_dim=1, end_dim=-1) has a continual form")
    return CoFlatten()
