"""Regular (clip-mode) building blocks shared by the model families.

Models are written with plain torch layers (Conv3d, BatchNorm3d, pools, activations, Sequential)
plus the small blocks below. `cozoo.continual.to_continual` knows how to convert every one of them,
so a model built only from these converts without extra code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


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


class WindowAvgPool3d(nn.Module):
    """Average over every ``window`` = (T, H, W) box at stride 1: PyTorchVideo's head pool, whose window is
    sized for the training clip and crop. `WindowMean` later averages the boxes' outputs.

    ``T=None`` pools the whole clip in time: the registered models' choice, equal to PyTorchVideo's window at
    their clip length and what a PyTorchVideo model built for another clip length would do. A dimension
    shorter than its window is pooled whole (PyTorchVideo would refuse it), so at the training size and
    below this is the global average pool.
    """

    def __init__(self, window: tuple[int | None, int, int]) -> None:
        super().__init__()
        if len(window) != 3 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                                   for w in window if w is not None) or None in window[1:]:
            raise ValueError(f"window must be (T or None, H, W) of positive ints, got {window!r}")
        self.window = tuple(window)

    def extra_repr(self) -> str:
        return f"window={self.window}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = x.shape[2:]
        kernel = [size if w is None else min(w, size) for w, size in zip(self.window, sizes, strict=True)]
        return F.avg_pool3d(x, kernel, stride=1)


class WindowMean(nn.Module):
    """Mean over the positions (T, H, W) of `WindowAvgPool3d`'s boxes, keeping a (N, C, 1, 1, 1) shape:
    PyTorchVideo's ``output_pool``, after whatever the head computes per box."""

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
        return self.map_frames(self.module, x)

    @staticmethod
    def map_frames(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``fn`` applied to every frame of ``x`` (N, C, T, H, W), outputs stacked on dim 2."""
        n, c, t, h, w = x.shape
        y = fn(x.transpose(1, 2).reshape(n * t, c, h, w))
        y = y.reshape(n, t, *y.shape[1:])
        return y.transpose(1, 2)
