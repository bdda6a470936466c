"""Inference-only speed-up: fold each BatchNorm that directly follows a convolution into the conv.

``y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta`` is a conv with scaled weights and a new
bias, so the fused model computes the same function (up to float rounding) with one op fewer per pair:
for a regular model in clip mode, for a continual model in clip and in step mode. The result is a new
model for inference; its state-dict keys differ (the folded BatchNorms are gone), so train and save the
unfused model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from cozoo.continual.base import ContinualModule
from cozoo.continual.containers import CoIdentity
from cozoo.continual.conv import CoConv3d

_CONVS = (nn.Conv3d, CoConv3d)


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (regular or continual, in eval mode) with Conv->BatchNorm pairs folded.

    A pair is a 3D conv (or a ``Sequential`` ending in one) followed by a ``BatchNorm3d`` with running
    statistics in the same ``nn.Sequential``; the BatchNorm is replaced by an identity.
    """
    if model.training:
        raise ValueError(
            "fuse_conv_bn is for inference: call model.eval() first (BatchNorm must use running stats)"
        )
    fused = copy.deepcopy(model)
    for module in fused.modules():
        if isinstance(module, nn.Sequential):
            _fuse_in_sequence(module)
    if isinstance(fused, ContinualModule):
        fused.bind_schedule()  # type: ignore[attr-defined]
        fused.reset()  # a copy made mid-stream would carry state computed with the unfused weights
    return fused


def _fuse_in_sequence(sequence: nn.Sequential) -> None:
    names = list(sequence._modules)
    for first, second in zip(names, names[1:], strict=False):
        conv, bn = _last_layer(sequence._modules[first]), sequence._modules[second]
        if isinstance(conv, _CONVS) and isinstance(bn, nn.BatchNorm3d) and bn.track_running_stats:
            _fold(conv, bn)
            sequence._modules[second] = CoIdentity() if isinstance(conv, CoConv3d) else nn.Identity()


def _last_layer(module: nn.Module | None) -> nn.Module | None:
    """The layer whose output ``module`` returns: itself, or for a ``Sequential`` its last layer's
    (e.g. R(2+1)D's factorised conv, a Sequential ending in the temporal conv, followed by a BatchNorm)."""
    while isinstance(module, nn.Sequential) and len(module):
        module = module[-1]
    return module


@torch.no_grad()
def _fold(conv: nn.Module, bn: nn.BatchNorm3d) -> None:
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = (bias - bn.running_mean) * scale
    if bn.bias is not None:
        new_bias = new_bias + bn.bias
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1, 1))
    conv.bias = nn.Parameter(new_bias)
