"""Inference fast paths of the step: what makes a step compute at the clip's MACs/s.

All of them compute the plain eager step's outputs (to float rounding) and are on by default; `fast_steps`
switches them off, for equivalence tests and for before/after benchmarks in one process.

* **BatchNorm folded at inference.** With gradients disabled and the BatchNorm in eval mode, a
  ``CoSequential`` skips each BatchNorm that directly follows a ``CoConv3d`` and the conv steps with
  weights scaled and bias shifted by it (`fold_bn`; cached until any of those tensors changes). The model
  and its state dict are untouched: training, autograd and clip mode see the BatchNorms as before.
* **Depthwise caches in ``channels_last_3d`` on CPU.** A depthwise temporal conv convolves its frame cache
  with one 3D conv; oneDNN runs that 2-3x faster with the cache laid out channels-last (measured for
  X3D's 3x3x3 convs at batch 1, one thread). The output frame is then channels-last too, which the
  following per-frame ops and 1x1 convs take as it is. CUDA caches keep their layout (not measured there).

* **1x1 convs as matrix products on CPU.** A conv of one frame (or a frame window viewed as channels) whose
  spatial kernel is 1x1, with stride 1 and one group, is a matrix product over pixels (`pointwise`): one
  GEMM in the input's own memory layout, where ATen's 2D conv takes a slow im2col path that costs ~50 us
  a call even on tiny frames at one thread (55 such convs per CoX3D-S step).

* **Depthwise caches as ring buffers on CPU.** Instead of shifting its K_T-frame cache (K_T - 1 frame copies
  per step), a depthwise conv with temporal dilation 1 writes each frame over the oldest one and convolves
  with its weight's taps rolled to match (`ring_weight`): one frame copy per step. The slot is a Python
  counter of steps, like the emission schedule. CUDA caches keep shifting: a CUDA graph replays one
  stride phase per graph, and a ring's slot would add phases (a step compiled with ``torch.compile`` on
  CPU likewise specialises on the slot: compile CPU steps under ``fast_steps(False)``).

Whether a path applies depends on the grad mode, module flags and the device, never on data, and the step
still only updates preallocated state in place, so it stays CUDA-graph capturable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

_enabled = True
_rings = True


def fast_steps_enabled() -> bool:
    """Whether the step fast paths are on (the default)."""
    return _enabled


@contextlib.contextmanager
def fast_steps(enabled: bool) -> Iterator[None]:
    """Run the enclosed steps with the fast paths on or off (``False``: the plain eager step, as reference).

    State allocated under one setting keeps its layout when stepped under the other (still correct);
    `reset` the model between them to compare like with like."""
    global _enabled
    saved, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = saved


@contextlib.contextmanager
def ring_caches(enabled: bool) -> Iterator[None]:
    """Allocate new depthwise caches as ring buffers or not (``False``: shifted caches), the other fast
    paths unchanged. A ring's slot is one counter for the whole batch, so steps that must leave some rows
    untouched (`cozoo.inference.StreamPool`) need shifted caches."""
    global _rings
    saved, _rings = _rings, enabled
    try:
        yield
    finally:
        _rings = saved


def folding_active() -> bool:
    """Whether a step may fold BatchNorms into the convs before them: fast paths on, no autograd, not
    being compiled (TorchInductor fuses a BatchNorm into its neighbours itself)."""
    return _enabled and not torch.is_grad_enabled() and not torch.compiler.is_compiling()


def foldable(bn: nn.Module) -> bool:
    """A BatchNorm3d normalising with its running statistics (eval mode), as folding assumes."""
    return (isinstance(bn, nn.BatchNorm3d) and not bn.training and bn.track_running_stats
            and bn.running_mean is not None and bn.running_var is not None)


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm3d,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv weight and bias (C_out first) that compute ``bn(conv(x))`` with ``bn`` in eval mode."""
    scale = torch.rsqrt(bn.running_var + bn.eps)  # type: ignore[operator]
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale  # type: ignore[operator]
    if bias is not None:
        shift = shift + bias * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return weight * scale.view(-1, *([1] * (weight.dim() - 1))), shift


def bn_key(bn: nn.BatchNorm3d | None) -> tuple[object, ...] | None:
    """Identity and versions of a BatchNorm's tensors: a cached fold is stale once any of them changes."""
    if bn is None:
        return None
    tensors = (bn.running_mean, bn.running_var, bn.weight, bn.bias)
    return (id(bn), bn.eps, *((t.data_ptr(), t._version) if t is not None else None for t in tensors))


def fold_pairs(layers: list[nn.Module], conv_type: type) -> dict[int, nn.BatchNorm3d]:
    """Index of each ``conv_type`` layer of ``layers`` directly followed by a BatchNorm3d: that BatchNorm."""
    return {
        i: bn for i, (conv, bn) in enumerate(zip(layers, layers[1:], strict=False))
        if isinstance(conv, conv_type) and isinstance(bn, nn.BatchNorm3d)
    }


def depthwise_cache_layout(frame: torch.Tensor, spatial_kernel: tuple[int, ...]) -> torch.memory_format:
    """Memory format for a depthwise conv's frame cache: ``channels_last_3d`` on CPU with fast paths on,
    for convs with a spatial extent (a purely temporal one is a batched matrix product, `temporal_depthwise`,
    which wants each channel's frames contiguous)."""
    if _enabled and frame.device.type == "cpu" and spatial_kernel != (1, 1):
        return torch.channels_last_3d
    return torch.contiguous_format


def temporal_depthwise_applies(weight: torch.Tensor, spatial_stride: tuple[int, ...],
                               spatial_padding: tuple[int, ...]) -> bool:
    """Whether a depthwise conv (C, 1, K_T, kh, kw) is purely temporal (1x1, stride 1, no spatial padding)
    and the fast paths are on: then `temporal_depthwise` computes it."""
    return (_enabled and tuple(weight.shape[3:]) == (1, 1) and tuple(spatial_stride) == (1, 1)
            and tuple(spatial_padding) == (0, 0))


def temporal_depthwise(window: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A depthwise K_Tx1x1 conv of a frame window (N, C, K_T, H, W) -> (N, C, H, W), as one batched
    matrix product per channel (weights (C, 1, K_T) times frames (C, K_T, H*W)): 3x faster than oneDNN's
    3D conv on CPU (X3D's stem, measured at one thread)."""
    n, c, k, h, w = window.shape
    out = torch.matmul(weight.reshape(c, 1, k), window.reshape(n, c, k, h * w)).view(n, c, h, w)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def pointwise_applies(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, ...],
                      padding: tuple[int, ...], groups: int) -> bool:
    """Whether a 2D conv of ``x`` (N, C, H, W) by ``weight`` is a plain matrix product that `pointwise`
    computes: fast paths on, CPU, 1x1 kernel, stride 1, no padding, one group."""
    return (_enabled and x.device.type == "cpu" and groups == 1 and tuple(weight.shape[2:]) == (1, 1)
            and tuple(stride) == (1, 1) and tuple(padding) == (0, 0))


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 conv (C_out, C, 1, 1) of ``x`` (N, C, H, W) as one matrix product, without copying ``x``: a
    channels-last input is a (pixels, C) matrix and gives a channels-last output; a contiguous one is
    (N, C, pixels) and gives a contiguous output, as the conv would."""
    n, c, h, w = x.shape
    matrix = weight.view(weight.shape[0], c)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        pixels = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
        out = torch.mm(pixels, matrix.t()) if bias is None else torch.addmm(bias, pixels, matrix.t())
        return out.view(n, h, w, -1).permute(0, 3, 1, 2)
    channels = x.reshape(n, c, h * w)
    if bias is None:
        return torch.matmul(matrix, channels).view(n, -1, h, w)
    return torch.baddbmm(bias.view(1, -1, 1), matrix.expand(n, -1, -1), channels).view(n, -1, h, w)


def ring_cache_applies(frame: torch.Tensor, depthwise: bool, dilation: int) -> bool:
    """Whether a new frame cache of a conv becomes a ring buffer (`ring_write`): fast paths and rings on
    (`ring_caches`), CPU, depthwise, temporal dilation 1. Decided once per stream, when the cache is
    allocated."""
    return _enabled and _rings and frame.device.type == "cpu" and depthwise and dilation == 1


def ring_write(cache: torch.Tensor, frame: torch.Tensor, slot: int) -> torch.Tensor:
    """Write ``frame`` into ``slot`` of a ring cache (N, C, K, ...); in place, except with gradients enabled
    (a copy then, as layers saved the old cache for their backward pass). Returns the cache."""
    if torch.is_grad_enabled():
        cache = cache.clone()
    cache[:, :, slot] = frame
    return cache


def ring_weight(weight: torch.Tensor, newest: int) -> torch.Tensor:
    """A temporal kernel (C_out, C_in/g, K, ...) rolled for a ring cache whose newest frame is in slot
    ``newest``: slot j holds the frame of tap (j - newest - 1) mod K."""
    return torch.roll(weight, shifts=newest + 1, dims=2)
