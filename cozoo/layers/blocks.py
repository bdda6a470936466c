"""Regular (clip-mode) building blocks shared by the model families.

Models are written with plain torch layers (Conv3d, BatchNorm3d, pools, activations, Sequential)
plus the small blocks below. `cozoo.continual.to_continual` knows how to convert every one of them,
so a model built only from these converts without extra code.
"""

from __future__ import annotations

import torch
from torch import nn


class Residual(nn.Module):
    """``activation(branch(x) + shortcut(x))``; ``shortcut=None`` is the identity."""

    def __init__(
        self, branch: nn.Module, shortcut: nn.Module | None = None, activation: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x) + (x if self.shortcut is None else self.shortcut(x))
        return out if self.activation is None else self.activation(out)


class GlobalAvgPool3d(nn.Module):
    """Mean over time and space, keeping a (N, C, 1, 1, 1) shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4), keepdim=True)


class SqueezeExcitation(nn.Module):
    """Channel gating: ``x * sigmoid(fc2(relu(fc1(mean_thw(x)))))`` with 1x1x1 convs as the fcs."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv3d(channels, hidden, kernel_size=1, bias=True)
        self.relu = nn.ReLU(inplace=False)
        self.fc2 = nn.Conv3d(hidden, channels, kernel_size=1, bias=True)
        self.gate = nn.Sigmoid()

    def scale(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.gate(self.fc2(self.relu(self.fc1(pooled))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale(x.mean(dim=(2, 3, 4), keepdim=True))


class Flatten(nn.Module):
    """(N, C, 1, 1, 1) -> (N, C). Continual form flattens each step's (N, C, 1, 1).

    ``expected`` (C, T, H, W), where a following linear layer fixes the map size, makes a wrong-sized input
    an error naming ``needs`` (what the model's input must be) instead of a matrix-shape error further on.
    """

    def __init__(self, expected: tuple[int, int, int, int] | None = None, needs: str = "") -> None:
        super().__init__()
        self.expected = expected
        self.needs = needs

    def check_size(self, size: tuple[int, ...], per_frame: bool = False) -> None:
        """Raise if ``size`` (C, T, H, W), or (C, H, W) with ``per_frame``, is not the expected map size."""
        if self.expected is None:
            return
        want = (self.expected[0], *self.expected[2:]) if per_frame else self.expected
        if tuple(size) != want:
            raise ValueError(f"{self.needs or 'this model needs another input size'}: the flattened maps "
                             f"should be {want}, got {tuple(size)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_size(x.shape[1:])
        return x.flatten(1)


class PerFrame(nn.Module):
    """Apply a 2D module (N, C, H, W) -> (N, C', H', W') or (N, F) to every frame of a clip.

    Output is (N, C', T, H', W') or (N, F, T). Stateless in continual mode.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        y = self.module(x.transpose(1, 2).reshape(n * t, c, h, w))
        y = y.reshape(n, t, *y.shape[1:])
        return y.transpose(1, 2)
