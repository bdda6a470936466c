"""Two-pathway building blocks (SlowFast): split a clip into slow and fast pathways, run a module per
pathway, fuse the fast pathway into the slow one laterally, and concatenate the pathways for the head."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

Clip = torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...]
SlowFrames = Literal["linspace", "stride"]


class SplitPathways(nn.Module):
    """Clip -> ``[slow, fast]``; a ``[slow, fast]`` list passes through.

    ``slow_frames="linspace"``: the slow frames are ``linspace(0, T - 1, T // alpha)`` truncated (the
    publisher's recipe); ``"stride"``: ``slow_sampler(clip)``, a ``MaxPool3d(kernel_size=1, stride=(alpha,
    1, 1))``, i.e. ``x[:, :, ::alpha]``. They agree when ``T // alpha == 1``; for 32 frames and alpha 4
    they share frames 0, 4 and 8 only.
    """

    def __init__(self, alpha: int, slow_frames: SlowFrames = "stride") -> None:
        super().__init__()
        if alpha < 1:
            raise ValueError(f"alpha must be a positive integer, got {alpha}")
        if slow_frames not in get_args(SlowFrames):
            raise ValueError(f"slow_frames must be one of {get_args(SlowFrames)}, got {slow_frames!r}")
        self.alpha = alpha
        self.slow_frames = slow_frames
        self.slow_sampler = nn.MaxPool3d(kernel_size=1, stride=(alpha, 1, 1))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, slow_frames={self.slow_frames!r}"

    def forward(self, x: Clip) -> list[torch.Tensor]:
        if isinstance(x, torch.Tensor):
            if x.dim() != 5:
                raise ValueError(f"expected a clip of shape (N, C, T, H, W), got shape {tuple(x.shape)}")
            if self.slow_frames == "stride":
                return [self.slow_sampler(x), x]
            frames = x.shape[2]
            if frames < self.alpha:
                raise ValueError(f"a clip of {frames} frames has no slow frame at alpha {self.alpha}: "
                                 f"SlowFast needs at least {self.alpha} frames")
            index = torch.linspace(0, frames - 1, frames // self.alpha, device=x.device).long()
            return [x.index_select(2, index), x]
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
