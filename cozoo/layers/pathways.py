"""Two-pathway building blocks (SlowFast): split a clip into slow and fast pathways, run a module per
pathway, fuse the fast pathway into the slow one laterally, and concatenate the pathways for the head."""

from __future__ import annotations

import torch
from torch import nn

Clip = torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...]


class SplitPathways(nn.Module):
    """Clip -> ``[slow, fast]`` with ``slow = slow_sampler(clip)``; a ``[slow, fast]`` list passes through.

    ``slow_sampler`` is ``MaxPool3d(kernel_size=1, stride=(alpha, 1, 1))``, i.e. ``x[:, :, ::alpha]``.
    """

    def __init__(self, alpha: int) -> None:
        super().__init__()
        if alpha < 1:
            raise ValueError(f"alpha must be a positive integer, got {alpha}")
        self.alpha = alpha
        self.slow_sampler = nn.MaxPool3d(kernel_size=1, stride=(alpha, 1, 1))

    def forward(self, x: Clip) -> list[torch.Tensor]:
        if isinstance(x, torch.Tensor):
            if x.dim() != 5:
                raise ValueError(f"expected a clip of shape (N, C, T, H, W), got shape {tuple(x.shape)}")
            return [self.slow_sampler(x), x]
        if len(x) != 2 or any(not isinstance(t, torch.Tensor) or t.dim() != 5 for t in x):
            raise ValueError("expected a clip tensor or a list [slow, fast] of two (N, C, T, H, W) tensors")
        return list(x)


class Pathways(nn.ModuleList):
    """Apply module i to tensor i of a list; returns the list of outputs."""

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(xs) != len(self):
            raise ValueError(f"expected {len(self)} pathway tensors, got {len(xs)}")
        return [module(x) for module, x in zip(self, xs, strict=True)]


class FuseFastToSlow(nn.Module):
    """``[slow, fast] -> [cat(slow, activation(bn(conv(fast))), dim=1), fast]`` (lateral connection)."""

    def __init__(self, conv: nn.Conv3d, bn: nn.BatchNorm3d, activation: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.bn = bn
        self.activation = activation

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        slow, fast = xs
        return [torch.cat([slow, self.activation(self.bn(self.conv(fast)))], dim=1), fast]


class ConcatPathways(nn.Module):
    """Concatenate a list of pathway tensors along channels."""

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, dim=1)
