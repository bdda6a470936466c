"""timm's features/heads interface, written once for every model family (regular and continual).

Every cozoo model is a (nested) ``nn.Sequential`` whose head starts at a global pool (or, for C3D, at the
flattening before ``fc6``) and ends in one classifier ``nn.Linear``. `FeatureHeads` reads that layout from two
dotted paths, ``head_start`` and ``classifier_name``, and gives:

* ``forward_features(x)``: everything before ``head_start`` (features before the global pool, clip mode);
* ``forward_head(features, pre_logits=False)``: the rest; ``pre_logits`` skips the classifier (timm: the
  pooled features, after the head's dropout, which is the identity in eval mode);
* ``reset_classifier(num_classes)``: a fresh classifier, or ``nn.Identity`` for ``num_classes=0`` (the model
  then outputs its pooled features, as timm's ``num_classes=0``);
* ``num_features``: the classifier's input width.

`VideoClassifier` is the regular container; it adds ``set_grad_checkpointing``. The continual container
(`cozoo.continual.heads.CoVideoClassifier`) shares the same mixin and adds per-step features.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from cozoo.layers.blocks import PerFrame

Apply = Callable[[nn.Module, Any], Any]


def _call(module: nn.Module, x: Any) -> Any:
    return module(x)


def _split(sequence: nn.Module, path: str) -> tuple[list[nn.Module], list[nn.Module]]:
    """The children of nested Sequentials before and from the module at dotted ``path``."""
    name, _, rest = path.partition(".")
    names = list(sequence._modules)
    if name not in names:
        raise ValueError(f"{type(sequence).__name__} has no child {name!r} (head split path {path!r})")
    index = names.index(name)
    before = [sequence._modules[n] for n in names[:index]]
    after = [sequence._modules[n] for n in names[index + 1:]]
    child = sequence._modules[name]
    assert child is not None
    if rest:
        inner_before, inner_after = _split(child, rest)
        return before + inner_before, inner_after + after  # type: ignore[operator]
    return before, [child, *after]  # type: ignore[list-item]


class FeatureHeads:
    """Mixin for a Sequential model: timm's ``forward_features`` / ``forward_head`` / ``reset_classifier``
    (see the module docstring). ``head_start``, ``classifier_name`` and ``num_features`` are set by
    `init_heads`."""

    head_start: str
    classifier_name: str
    num_features: int

    def init_heads(self, head_start: str, classifier_name: str, num_features: int | None = None) -> None:
        """Record the layout; ``num_features`` defaults to the classifier's input width (it must be given
        when the classifier is already the identity)."""
        self.head_start, self.classifier_name = head_start, classifier_name
        _split(self, head_start)  # type: ignore[arg-type]  # fails early on a wrong path
        layer = self.get_classifier()
        if num_features is None:
            if not isinstance(layer, nn.Linear):
                raise ValueError(f"{classifier_name!r} is a {type(layer).__name__}, not an nn.Linear "
                                 "classifier")
            num_features = layer.in_features
        self.num_features = num_features

    # -- parts ---------------------------------------------------------------------------------------------
    def feature_modules(self) -> list[nn.Module]:
        return _split(self, self.head_start)[0]  # type: ignore[arg-type]

    def head_modules(self) -> list[nn.Module]:
        return _split(self, self.head_start)[1]  # type: ignore[arg-type]

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_name)  # type: ignore[attr-defined]

    @property
    def num_classes(self) -> int:
        """Outputs of the classifier; 0 when it was reset to the identity (features out)."""
        layer = self.get_classifier()
        return layer.out_features if isinstance(layer, nn.Linear) else 0

    # -- calls ---------------------------------------------------------------------------------------------
    def _run(self, modules: list[nn.Module], x: Any, apply: Apply = _call, pre_logits: bool = False) -> Any:
        """Apply ``modules`` in turn (``apply(module, x)``; None stops, as a continual step's warm-up does);
        ``pre_logits`` leaves out the classifier, also inside a per-frame head (many-to-many CNN-LSTM)."""
        target = self.get_classifier() if pre_logits else None
        for module in modules:
            if module is target:
                continue
            if target is not None and isinstance(module, PerFrame) and _holds(module.module, target):
                inner = [m for m in module.module.children() if m is not target]
                if apply is _call:  # clip mode: every frame through the 2D modules
                    x = module.map_frames(functools.partial(_sequence, inner), x)
                else:  # a step: the frame itself (as a continual PerFrame steps)
                    x = _sequence(inner, x)
            else:
                x = apply(module, x)
            if x is None:
                return None
        return x

    def forward_features(self, x: Any) -> Any:
        """Features before the global pool (clip mode): (N, C, T, H, W), or a list per pathway (SlowFast)."""
        return self._run(self.feature_modules(), x)

    def forward_head(self, features: Any, pre_logits: bool = False) -> torch.Tensor:
        """Pool and classify ``forward_features`` output; ``pre_logits``: the pooled features (N, F)."""
        return self._run(self.head_modules(), features, pre_logits=pre_logits)

    def reset_classifier(self, num_classes: int) -> None:
        """A freshly initialised classifier with ``num_classes`` outputs; 0 puts ``nn.Identity`` in its
        place, so the model outputs its pooled features (``num_features`` wide)."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be a whole number >= 0, got {num_classes!r}")
        old = self.get_classifier()
        param = next(old.parameters(), None)
        if num_classes:
            new: nn.Module = nn.Linear(self.num_features, num_classes)
            if param is not None:
                new.to(device=param.device, dtype=param.dtype)
        else:
            new = nn.Identity()
        self._replace_classifier(self._adapt_classifier(new, old))

    def _adapt_classifier(self, new: nn.Module, old: nn.Module) -> nn.Module:
        """Hook for the continual container (a continual layer in place of a regular one)."""
        new.train(old.training)
        return new

    def _replace_classifier(self, new: nn.Module) -> None:
        parent_name, _, name = self.classifier_name.rpartition(".")
        parent = self.get_submodule(parent_name) if parent_name else self  # type: ignore[attr-defined]
        setattr(parent, name, new)


def _holds(module: nn.Module, target: nn.Module) -> bool:
    return any(m is target for m in module.modules())


def _sequence(modules: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for module in modules:
        x = module(x)
    return x


class _FrozenNormStats:
    """Context for a checkpointed segment's recomputation: BatchNorm running statistics are put back as
    they were, so recomputing a training-mode forward does not update them a second time."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.norms = [m for segment in modules for m in segment.modules()
                      if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        self.saved: list[list[torch.Tensor]] = []

    def __enter__(self) -> None:
        self.saved = [[b.clone() for b in (n.running_mean, n.running_var, n.num_batches_tracked)
                       if b is not None] for n in self.norms]

    def __exit__(self, *exc: object) -> None:
        with torch.no_grad():
            for norm, saved in zip(self.norms, self.saved, strict=True):
                buffers = [b for b in (norm.running_mean, norm.running_var, norm.num_batches_tracked)
                           if b is not None]
                for buffer, value in zip(buffers, saved, strict=True):
                    buffer.copy_(value)
        self.saved = []


def checkpoint_segments(modules: list[nn.Module]) -> list[list[nn.Module]]:
    """Group a feature path into segments for activation checkpointing: plain Sequentials are opened up,
    and a segment starts at every element holding a convolution (a stem, a residual block, a SlowFast stage
    or fusion, a C3D conv with its activation and pool)."""
    flat: list[nn.Module] = []
    for module in modules:
        flat.extend(_open(module))
    segments: list[list[nn.Module]] = []
    for module in flat:
        has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())
        if has_conv or not segments:
            segments.append([module])
        else:
            segments[-1].append(module)
    return segments


def _open(module: nn.Module) -> Iterator[nn.Module]:
    if type(module) is nn.Sequential:
        for child in module.children():
            yield from _open(child)
    else:
        yield module


class VideoClassifier(FeatureHeads, nn.Sequential):
    """A regular model: an ``nn.Sequential`` with timm's features/heads interface and activation
    checkpointing (`set_grad_checkpointing`)."""

    def __init__(self, layers: Any, head_start: str, classifier_name: str) -> None:
        super().__init__(layers)
        self.grad_checkpointing = False
        self.init_heads(head_start, classifier_name)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each feature segment's activations in the backward pass instead of keeping them (see
        `checkpoint_segments`): the same gradients for less activation memory, at about one more forward
        pass of compute. Only while gradients are on; BatchNorm statistics are updated once, and dropout
        draws the same masks when recomputed."""
        self.grad_checkpointing = bool(enable)

    def forward_features(self, x: Any) -> Any:
        if not (self.grad_checkpointing and torch.is_grad_enabled()):
            return super().forward_features(x)
        for segment in checkpoint_segments(self.feature_modules()):
            x = checkpoint(_sequence, segment, x, use_reentrant=False,
                           context_fn=lambda s=segment: (nullcontext(), _FrozenNormStats(s)))
        return x

    def forward(self, x: Any) -> Any:
        return self.forward_head(self.forward_features(x))
