"""Inference-only speed-up: fold each BatchNorm that directly follows a convolution into the conv.

``y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta`` is a conv with scaled weights and a new
bias, so the fused model computes the same function (up to float rounding) with one op fewer per pair,
in clip and in step mode. The result is a new model for inference; its state-dict keys differ (the
folded BatchNorms are gone), so train and save the unfused model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from cozoo.continual.containers import CoIdentity, CoSequential
from cozoo.continual.conv import CoConv3d


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (a continual model in eval mode) with Conv->BatchNorm pairs folded."""
    if model.training:
        raise ValueError(
            "fuse_conv_bn is for inference: call model.eval() first (BatchNorm must use running stats)"
        )
    fused = copy.deepcopy(model)
    for module in fused.modules():
        if isinstance(module, CoSequential):
            _fuse_in_sequence(module)
    fused.bind_schedule()  # type: ignore[attr-defined]
    return fused


def _fuse_in_sequence(sequence: CoSequential) -> None:
    names = list(sequence._modules)
    for first, second in zip(names, names[1:], strict=False):
        conv, bn = sequence._modules[first], sequence._modules[second]
        if isinstance(conv, CoConv3d) and isinstance(bn, nn.BatchNorm3d) and bn.track_running_stats:
            _fold(conv, bn)
            sequence._modules[second] = CoIdentity()


@torch.no_grad()
def _fold(conv: CoConv3d, bn: nn.BatchNorm3d) -> None:
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = (bias - bn.running_mean) * scale
    if bn.bias is not None:
        new_bias = new_bias + bn.bias
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1, 1))
    conv.bias = nn.Parameter(new_bias)
