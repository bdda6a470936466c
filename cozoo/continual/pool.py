"""Continual pooling: temporal avg/max pools with stride, and a windowed global average pool."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cozoo.continual.base import (
    ContinualModule,
    Schedule,
    WindowedLayer,
    advance,
    pad_to_length,
    shift_in,
)
from cozoo.layers.blocks import WindowAvgPool3d


def _triple(value: int | tuple[int, ...]) -> tuple[int, int, int]:
    return (value, value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


class _CoPool3d(WindowedLayer, nn.Module):
    """Shared schedule and cache of the temporal pools: caches the last ``kernel_t`` frames."""

    def __init__(self, pool: nn.MaxPool3d | nn.AvgPool3d) -> None:
        super().__init__()
        if pool.ceil_mode:
            raise ValueError(f"{type(pool).__name__} with ceil_mode=True has no continual form")
        kernel = _triple(pool.kernel_size)
        stride = _triple(pool.stride if pool.stride is not None else pool.kernel_size)
        padding = _triple(pool.padding)
        self.source = pool
        self.kernel_t, self.stride_t, self.padding_t = kernel[0], stride[0], padding[0]
        self.spatial_kernel, self.spatial_stride, self.spatial_padding = kernel[1:], stride[1:], padding[1:]
        self._reset_state()

    @property
    def receptive_field(self) -> int:
        return self.kernel_t

    def _pool(self, x: torch.Tensor, stride_t: int, padding_t: int) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.source_padding:
            return self.source(x)
        x, short = pad_to_length(x[:, :, self.phase_offset :], self.kernel_t)
        out = self._pool(x, self.stride_t, 0)
        return out[:, :, :0] if short else out

    def _reset_state(self) -> None:
        self._steps = 0
        self._state: torch.Tensor | None = None

    def _step(self, frame: torch.Tensor) -> torch.Tensor | None:
        emit = self._tick()
        if self.kernel_t == 1:
            return self._pool(frame.unsqueeze(2), 1, 0).squeeze(2) if emit else None
        if self._state is None:
            n, c, h, w = frame.shape
            self._state = self.new_state(frame, n, c, self.kernel_t, h, w)
        self._state = shift_in(self._state, frame)
        return self._pool(self._state, 1, 0).squeeze(2) if emit else None


class CoMaxPool3d(_CoPool3d):
    """Continual ``nn.MaxPool3d`` (temporal dilation 1)."""

    def __init__(self, pool: nn.MaxPool3d) -> None:
        if _triple(pool.dilation) != (1, 1, 1) or pool.return_indices:
            raise ValueError("CoMaxPool3d supports dilation 1 and return_indices=False only")
        super().__init__(pool)

    def _pool(self, x: torch.Tensor, stride_t: int, padding_t: int) -> torch.Tensor:
        return F.max_pool3d(
            x, (self.kernel_t, *self.spatial_kernel), (stride_t, *self.spatial_stride),
            (padding_t, *self.spatial_padding),
        )

    def initial_state_value(self) -> float:
        return -math.inf  # torch's max pool ignores padded positions


class CoAvgPool3d(_CoPool3d):
    """Continual ``nn.AvgPool3d`` (same spatial padding semantics as the source)."""

    def __init__(self, pool: nn.AvgPool3d) -> None:
        if pool.divisor_override is not None:
            raise ValueError("CoAvgPool3d does not support divisor_override")
        super().__init__(pool)

    def _pool(self, x: torch.Tensor, stride_t: int, padding_t: int) -> torch.Tensor:
        return F.avg_pool3d(
            x, (self.kernel_t, *self.spatial_kernel), (stride_t, *self.spatial_stride),
            (padding_t, *self.spatial_padding), count_include_pad=self.source.count_include_pad,
        )

    def _padded_first(self) -> int:
        if self.padding_t and not self.source.count_include_pad:
            raise ValueError("AvgPool3d with temporal padding and count_include_pad=False divides its first "
                             "outputs by their real frames only: it has no padded warm-up")
        return super()._padded_first()


class CoGlobalAvgPool3d(ContinualModule, nn.Module):
    """Spatial mean per frame, then a running temporal mean over the last ``window`` frames.

    The window may exceed the source clip length (e.g. CoX3D-S_64): per-step cost does not grow with it.
    Clip mode yields one output per complete window (stride 1); with source padding it is the source's
    global mean over the whole clip.

    With ``spatial_window`` = (H, W) (from a `cozoo.layers.blocks.WindowAvgPool3d`, PyTorchVideo's head
    pool) each frame is averaged over every H x W box at stride 1 instead, and the running mean keeps one
    value per box: a step gives (N, C, boxes_h, boxes_w), which `CoWindowMean` averages after the head's
    per-box layers. The windows are spatial only: the temporal extent is ``window``. With source padding,
    clip mode is the source pool (its temporal window included).
    """

    def __init__(self, window: int, source: WindowAvgPool3d | None = None) -> None:
        super().__init__()
        self.window = window  # also sets up the (empty) stream state
        self.input_stride = 1
        self.source = source
        self.spatial_window = None if source is None else source.window[1:]

    @property
    def window(self) -> int:
        return self._window

    @window.setter
    def window(self, value: int) -> None:
        """Setting it drops this pool's stream state (its length is the window's)."""
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"pool window must be a positive int, got {value!r}")
        self._window = value
        self._reset_state()

    def extra_repr(self) -> str:
        boxes = "" if self.spatial_window is None else f", spatial_window={self.spatial_window}"
        return f"window={self.window}{boxes}"

    @property
    def receptive_field(self) -> int:
        return self.window

    @property
    def first_output(self) -> int:
        return self.window - 1

    @property
    def pooled_elements(self) -> int:
        return self.window

    def _local_first(self, skip: int) -> tuple[int, int]:
        return self.window - 1, 0

    def _bind(self, inp: Schedule) -> None:
        self.input_stride = inp.stride

    def _spatial(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, [T,] H, W) -> per-frame means (N, C[, T]) or box means (N, C[, T], h, w)."""
        if self.spatial_window is None:
            return x.mean(dim=(-2, -1))
        kernel = [min(w, size) for w, size in zip(self.spatial_window, x.shape[-2:], strict=True)]
        if x.dim() == 4:
            return F.avg_pool2d(x, kernel, stride=1)
        return F.avg_pool3d(x, (1, *kernel), stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.source_padding:
            return x.mean(dim=(2, 3, 4), keepdim=True) if self.source is None else self.source(x)
        spatial, short = pad_to_length(self._spatial(x), self.window)
        if self.spatial_window is None:
            out = F.avg_pool1d(spatial, self.window, stride=1)[..., None, None]
        else:
            out = F.avg_pool3d(spatial, (self.window, 1, 1), stride=1)
        return out[:, :, :0] if short else out

    def _reset_state(self) -> None:
        self._steps = 0
        self._state: torch.Tensor | None = None

    def _step(self, frame: torch.Tensor) -> torch.Tensor | None:
        emit = self._steps >= self.window - 1
        self._steps = advance(self._steps, self.window - 1, 1)
        pooled = self._spatial(frame)
        if self._state is None:
            self._state = self.new_state(pooled, *pooled.shape[:2], self.window, *pooled.shape[2:])
        self._state = shift_in(self._state, pooled)
        if not emit:
            return None
        mean = self._state.mean(dim=2)
        return mean[..., None, None] if self.spatial_window is None else mean
