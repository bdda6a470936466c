"""Per-frame modules: no temporal state, so step mode applies the source op to a one-frame clip.

Continual counterparts of stateless layers are *subclasses* of the source layer (e.g. ``CoBatchNorm3d``
is an ``nn.BatchNorm3d``), so parameters, buffers and state-dict keys stay exactly those of the source.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from cozoo.continual.base import ContinualModule
from cozoo.layers.blocks import Flatten, PerFrame, SqueezeExcitation, WindowMean


class _PerFrameStep(ContinualModule):
    """Step = the source op on the frame viewed as a one-frame clip (N, C, 1, ...)."""

    frame_rank = None
    source_class: type[nn.Module]  # set by `per_frame_class`

    def __reduce_ex__(self, protocol: int):  # type: ignore[override]
        """Pickle by the source class: the generated class is not importable by name."""
        reduced = super().__reduce_ex__(protocol)
        return (_new_per_frame, (self.source_class,), *reduced[2:])  # type: ignore[misc]

    def _step(self, frame: torch.Tensor) -> torch.Tensor:
        return self.forward(frame.unsqueeze(2)).squeeze(2)  # type: ignore[attr-defined]


class _ElementwiseStep(_PerFrameStep):
    """Elementwise ops (activations, dropout) apply to a frame as it is."""

    def _step(self, frame: torch.Tensor) -> torch.Tensor:
        return self.forward(frame)  # type: ignore[attr-defined]


class _BatchNormStep(_PerFrameStep):
    """In eval mode a frame is normalised directly with the running statistics (no clip view)."""

    def _step(self, frame: torch.Tensor) -> torch.Tensor:
        if self.training or not self.track_running_stats:  # type: ignore[attr-defined]
            return super()._step(frame)
        return F.batch_norm(
            frame, self.running_mean, self.running_var, self.weight, self.bias,  # type: ignore[attr-defined]
            False, 0.0, self.eps,  # type: ignore[attr-defined]
        )


# Applied to a frame as it is; other stateless layers (e.g. Dropout3d) see it as a one-frame clip.
_ELEMENTWISE = (nn.ReLU, nn.SiLU, nn.Sigmoid, nn.Dropout, nn.Identity, nn.GELU, nn.Hardswish, nn.Hardsigmoid,
                nn.LeakyReLU, nn.ELU, nn.Tanh)


@functools.cache
def per_frame_class(source_cls: type[nn.Module]) -> type[nn.Module]:
    """The continual subclass of a stateless layer class, e.g. ``CoReLU`` for ``nn.ReLU``."""
    if issubclass(source_cls, nn.modules.batchnorm._BatchNorm):
        step_cls: type = _BatchNormStep
    elif issubclass(source_cls, _ELEMENTWISE):
        step_cls = _ElementwiseStep
    else:
        step_cls = _PerFrameStep
    namespace = {"__module__": __name__, "source_class": source_cls}
    return type(f"Co{source_cls.__name__}", (step_cls, source_cls), namespace)


def _new_per_frame(source_cls: type[nn.Module]) -> nn.Module:
    """An empty instance of the continual subclass of ``source_cls`` (unpickling fills it)."""
    cls = per_frame_class(source_cls)
    return cls.__new__(cls)


def as_per_frame(module: nn.Module) -> nn.Module:
    """Turn a stateless layer into its continual subclass in place (same object, same tensors)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not module.track_running_stats:
        raise TypeError(
            f"{type(module).__name__}(track_running_stats=False) normalises with the statistics of the whole "
            "input clip, which a frame-by-frame step cannot see: it has no continual form"
        )
    module.__class__ = per_frame_class(type(module))
    return module


class CoLinear(ContinualModule, nn.Linear):
    """``nn.Linear`` on features: clip mode (N, F, T) -> (N, K, T); step mode (N, F) -> (N, K)."""

    frame_rank = 2

    @property
    def expected_channels(self) -> int:
        return self.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.transpose(1, -1), self.weight, self.bias).transpose(1, -1)

    def _step(self, frame: torch.Tensor) -> torch.Tensor:
        return F.linear(frame, self.weight, self.bias)


class CoFlatten(ContinualModule, Flatten):
    """Clip mode (N, C, T, H, W) -> (N, C*H*W, T); step mode (N, C, H, W) -> (N, C*H*W).

    Features are ordered as the source's ``flatten(1)`` of a one-frame clip.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_size((x.shape[1], *x.shape[3:]), per_frame=True)
        if self.source_padding and x.shape[2] == 1:
            return x.flatten(1)
        return x.permute(0, 1, 3, 4, 2).flatten(1, 3)

    def _step(self, frame: torch.Tensor) -> torch.Tensor:
        self.check_size(frame.shape[1:], per_frame=True)
        return frame.flatten(1)


class CoSqueezeExcitation(ContinualModule, SqueezeExcitation):
    """Squeeze-excitation that pools each frame spatially (Co3D's step-mode form of X3D's SE).

    The source pools over the whole clip, which a causal step cannot see; this is part of the model shift.
    With source padding on, clip mode pools over the whole clip like the source.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.source_padding:
            return SqueezeExcitation.forward(self, x)
        return x * self.scale(x.mean(dim=(3, 4), keepdim=True))

    def _step(self, frame: torch.Tensor) -> torch.Tensor:
        # The 1x1x1 convs act on one pooled vector per frame: as linear layers they skip conv dispatch.
        pooled = frame.mean(dim=(2, 3))
        hidden = F.relu(F.linear(pooled, self.fc1.weight.flatten(1), self.fc1.bias))
        gate = torch.sigmoid(F.linear(hidden, self.fc2.weight.flatten(1), self.fc2.bias))
        return frame * gate[:, :, None, None]


class CoWindowMean(ContinualModule, WindowMean):
    """Mean over the head's spatial boxes per frame (`CoGlobalAvgPool3d` with a spatial window): clip mode
    keeps time, a step gives (N, C, 1, 1). With source padding, clip mode is the source's mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.source_padding:
            return WindowMean.forward(self, x)
        return x.mean(dim=(3, 4), keepdim=True)

    def _step(self, frame: torch.Tensor) -> torch.Tensor:
        return frame.mean(dim=(2, 3), keepdim=True)


class CoPerFrame(ContinualModule, PerFrame):
    """A 2D module applied to every frame; step mode calls it on the frame directly."""

    def _step(self, frame: torch.Tensor) -> torch.Tensor:
        return self.module(frame)
