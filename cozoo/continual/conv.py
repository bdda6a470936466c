"""Continual 3D convolution: a temporal FIR filter over frames, spatial convolution within each frame.

Two step-mode forms compute the same outputs:

* ``"pre"`` (direct form) caches the last ``receptive_field`` input frames and convolves them once per
  emitted output; state = receptive_field x C_in frames. Cheapest in memory when C_in < C_out.
* ``"post"`` (transposed form) convolves each incoming frame with every temporal tap at once (one 2D conv
  with K_T x C_out output channels) and keeps the (K_T - 1) x dilation partial sums of future outputs;
  state = (K_T - 1) x dilation x C_out frames. Cheapest in memory when C_in > C_out.

Either way a step costs one output frame of compute. ``cache="auto"`` picks by memory, except: with a
temporal stride > 1 it picks ``"pre"``, which only computes on emitted steps (``"post"`` still works but
computes partial sums every step), and for depthwise convs it picks ``"pre"`` too (one 3D conv over the
cache measured 2-4x faster than either 2D form on CPU).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from cozoo.continual.base import WindowedLayer, pad_to_length, shift_in
from cozoo.continual.fastpath import (
    bn_key,
    depthwise_cache_layout,
    fold_bn,
    pointwise,
    pointwise_applies,
    ring_cache_applies,
    ring_weight,
    ring_write,
    temporal_depthwise,
    temporal_depthwise_applies,
)

CacheForm = Literal["auto", "pre", "post"]


def check_cache_form(cache: str) -> None:
    """Refuse a ``cache`` argument other than ``"auto"``, ``"pre"`` or ``"post"``."""
    if cache not in ("auto", "pre", "post"):
        raise ValueError(f"cache must be 'auto', 'pre' or 'post', got {cache!r}")


class CoConv3d(WindowedLayer, nn.Module):
    """Continual counterpart of ``nn.Conv3d``; parameters ``weight``/``bias`` keep the source's names."""

    def __init__(self, conv: nn.Conv3d, cache: CacheForm = "auto") -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(
                f"CoConv3d supports numeric zero padding only, got padding={conv.padding!r} "
                f"padding_mode={conv.padding_mode!r}"
            )
        self.weight = conv.weight
        self.bias = conv.bias
        self.in_channels, self.out_channels, self.groups = conv.in_channels, conv.out_channels, conv.groups
        self.kernel_t, self.dilation_t = conv.kernel_size[0], conv.dilation[0]
        self.stride_t, self.padding_t = conv.stride[0], int(conv.padding[0])
        self.spatial_stride = tuple(conv.stride[1:])
        self.spatial_padding = tuple(int(p) for p in conv.padding[1:])
        self.spatial_dilation = tuple(conv.dilation[1:])
        self.cache = self._choose_cache(cache)
        self._reset_state()

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels

    def _choose_cache(self, cache: CacheForm) -> str:
        check_cache_form(cache)
        if cache != "auto":
            return cache
        if self.kernel_t == 1 or self.stride_t > 1 or self.depthwise:
            return "pre"
        pre_state = self.receptive_field * self.in_channels
        post_state = (self.receptive_field - 1) * self.out_channels
        return "pre" if pre_state <= post_state else "post"

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_t={self.kernel_t}, stride_t={self.stride_t}, "
            f"padding_t={self.padding_t}, dilation_t={self.dilation_t}, groups={self.groups}, "
            f"cache={self.cache!r}"
        )

    # -- schedule --------------------------------------------------------------------------------------
    @property
    def receptive_field(self) -> int:
        return (self.kernel_t - 1) * self.dilation_t + 1

    @property
    def expected_channels(self) -> int:
        return self.in_channels

    # -- clip mode -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding_t, short = self.padding_t, False
        if not self.source_padding:
            padding_t = 0
            x, short = pad_to_length(x[:, :, self.phase_offset :], self.receptive_field)
        out = F.conv3d(
            x, self.weight, self.bias, (self.stride_t, *self.spatial_stride),
            (padding_t, *self.spatial_padding), (self.dilation_t, *self.spatial_dilation), self.groups,
        )
        return out[:, :, :0] if short else out

    # -- step mode -------------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self._steps = 0
        self._state: torch.Tensor | None = None
        self._ring_slot: int | None = None  # the next slot of a ring cache (`fastpath`); None: shifted
        self.__dict__.pop("_derived", None)  # weights edited through ``.data`` keep their version

    def _step(self, frame: torch.Tensor, bn: nn.BatchNorm3d | None = None) -> torch.Tensor | None:
        """One step; with ``bn`` (an eval-mode BatchNorm after this conv, at inference) it is folded in."""
        emit = self._tick()
        if self.cache == "pre" or self.receptive_field == 1:
            return self._step_pre(frame, emit, bn)
        return self._step_post(frame, emit, bn)

    def _step_params(self, bn: nn.BatchNorm3d | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) of a step: the parameters, or with ``bn`` folded in (cached until they change)."""
        if bn is None:
            return self.weight, self.bias
        key = ("folded", *self._params_key(), bn_key(bn))
        cache = self.__dict__.setdefault("_derived", {})
        if cache.get("folded", (None,))[0] != key:
            bias = None if self.bias is None else self.bias.detach()
            cache["folded"] = (key, fold_bn(self.weight.detach(), bias, bn))
        return cache["folded"][1]

    def _ring_params(self, bn: nn.BatchNorm3d | None, newest: int,
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) for a ring cache whose newest frame is in slot ``newest`` (cached per slot)."""
        weight, bias = self._step_params(bn)
        if (torch.is_grad_enabled() and weight.requires_grad) or torch.compiler.is_compiling():
            return ring_weight(weight, newest), bias
        key = ("ring", *self._params_key(), bn_key(bn))
        cache = self.__dict__.setdefault("_derived", {})
        if cache.get(("ring", newest), (None,))[0] != key:
            cache[("ring", newest)] = (key, ring_weight(weight.detach(), newest))
        return cache[("ring", newest)][1], bias

    def _params_key(self) -> tuple[object, ...]:
        w, b = self.weight, self.bias
        return (w.data_ptr(), w._version, w.dtype, w.device, torch.is_inference_mode_enabled(),
                None if b is None else (b.data_ptr(), b._version))

    def _conv2d(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The spatial part of the convolution on one frame: a 2D conv (faster than a 3D conv with T=1), or
        the matrix product it is for a 1x1 kernel (`pointwise`)."""
        if pointwise_applies(x, weight, self.spatial_stride, self.spatial_padding, self.groups):
            return pointwise(x, weight, bias)
        return F.conv2d(
            x, weight, bias, self.spatial_stride, self.spatial_padding, self.spatial_dilation, self.groups
        )

    def _derived_weight(self, form: str, bn: nn.BatchNorm3d | None = None) -> torch.Tensor:
        """The weight laid out for a 2D conv, cached for inference (rebuilt when the weight changes, and at
        `reset`: an edit through ``weight.data`` is not seen before then).

        ``"pre"``: (C_out, C_in/g * K_T, kh, kw), matching a cache (N, C_in, K_T, H, W) viewed as
        (N, C_in * K_T, H, W). ``"post"``: (C_out * K_T, C_in/g, kh, kw) with taps newest-first, output
        channel c*K_T + j holding tap K_T-1-j of channel c (keeps grouped-conv channel groups intact).
        With ``bn``, of the weight with that BatchNorm folded in.
        """
        w = self.weight
        if (torch.is_grad_enabled() and w.requires_grad) or torch.compiler.is_compiling():
            return _layout(w, form)  # traced: the compiler folds or fuses the relayout
        key = (form, *self._params_key(), bn_key(bn))
        cache = self.__dict__.setdefault("_derived", {})
        if cache.get(form, (None,))[0] != key:
            cache[form] = (key, _layout(self._step_params(bn)[0].detach(), form))
        return cache[form][1]

    def _step_pre(self, frame: torch.Tensor, emit: bool, bn: nn.BatchNorm3d | None) -> torch.Tensor | None:
        if self.receptive_field == 1:
            if not emit:
                return None
            return self._conv2d(frame, self._derived_weight("pre", bn), self._step_params(bn)[1])
        if self._state is None:
            n, c, h, w = frame.shape
            layout = (depthwise_cache_layout(frame, tuple(self.weight.shape[3:])) if self.depthwise
                      else torch.contiguous_format)
            state = self.new_state(frame, n, c, self.receptive_field, h, w)
            self._state = state.contiguous(memory_format=layout)
            self._ring_slot = 0 if ring_cache_applies(frame, self.depthwise, self.dilation_t) else None
        slot = self._ring_slot
        if slot is None:
            self._state = shift_in(self._state, frame)
        else:
            self._state = ring_write(self._state, frame, slot)
            self._ring_slot = (slot + 1) % self.receptive_field
        if not emit:
            return None
        if self.depthwise:  # one 3D conv over the cache beats 2D forms for per-channel filters
            weight, bias = self._step_params(bn) if slot is None else self._ring_params(bn, slot)
            if temporal_depthwise_applies(weight, self.spatial_stride, self.spatial_padding):
                window = self._state if self.dilation_t == 1 else self._state[:, :, :: self.dilation_t]
                return temporal_depthwise(window, weight, bias)
            return F.conv3d(
                self._state, weight, bias, (1, *self.spatial_stride), (0, *self.spatial_padding),
                (self.dilation_t, *self.spatial_dilation), self.groups,
            ).squeeze(2)
        window = self._state if self.dilation_t == 1 else self._state[:, :, :: self.dilation_t]
        return self._conv2d(window.flatten(1, 2), self._derived_weight("pre", bn), self._step_params(bn)[1])

    def _step_post(self, frame: torch.Tensor, emit: bool, bn: nn.BatchNorm3d | None) -> torch.Tensor | None:
        taps = self._conv2d(frame, self._derived_weight("post", bn), None)
        n, _, h, w = taps.shape
        taps = taps.view(n, self.out_channels, self.kernel_t, h, w)
        if self._state is None:
            self._state = self.new_state(taps, n, self.out_channels, self.receptive_field - 1, h, w)
        # The oldest pending sum completes now with the newest tap.
        out = self._state[:, :, 0] + taps[:, :, 0]
        bias = self._step_params(bn)[1]
        if bias is not None:
            out = out + bias.view(1, -1, 1, 1)
        # Shift the pending sums; the newest tap opens the last one, the others add to theirs.
        acc = self._state = shift_in(self._state, taps[:, :, -1])
        if self.kernel_t > 2:
            d = self.dilation_t
            acc[:, :, d - 1 : -1 : d] += taps[:, :, 1:-1]
        return out if emit else None


def _layout(weight: torch.Tensor, form: str) -> torch.Tensor:
    c_out, c_in, k, kh, kw = weight.shape
    if form == "pre":
        return weight.reshape(c_out, c_in * k, kh, kw)
    return weight.flip(2).permute(0, 2, 1, 3, 4).reshape(c_out * k, c_in, kh, kw)
