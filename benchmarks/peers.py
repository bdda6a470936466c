"""Peer implementation for the benchmark: the same network built with the PyPI ``continual-inference``
library (1.2.4, ``import continual as co``), with our regular model's weights.

`to_co_inference(regular, pool_window)` converts a cozoo regular model tree (plain torch layers plus
`cozoo.layers.blocks`) into continual-inference modules:

* ``nn.Conv3d`` -> ``co.Conv3d`` (``temporal_fill="zeros"``); pools -> ``co.MaxPool3d`` / ``co.AvgPool3d``;
  ``GlobalAvgPool3d`` -> ``co.AdaptiveAvgPool3d((1, 1, 1), kernel_size=window)``; the windowed head pool
  ``WindowAvgPool3d`` -> per-frame box means (``co.Lambda``) then ``co.AvgPool3d((window, 1, 1), stride=1)``
  (as the Co3D authors' CoX3D head pools) and ``WindowMean`` -> a per-frame spatial mean (``co.Lambda``);
* per-frame layers (BatchNorm3d, ReLU, SiLU, Sigmoid, Dropout) -> ``co.forward_stepping``;
* ``Residual`` -> ``co.BroadcastReduce(co.Sequential(co.Delay(d), shortcut), branch, reduce="sum")``
  followed by the activation, where ``d`` is the branch's delay minus the shortcut's, in input frames.
  The delay sits *before* the shortcut so that temporally strided blocks stay in phase (``co.Residual``
  and ``auto_delay`` delay the strided output stream instead, which never lines up with the branch);
* ``SqueezeExcitation`` -> ``co.BroadcastReduce(identity, pool(kernel 1) fc1 relu fc2 sigmoid,
  reduce="mul")``: a per-frame spatial squeeze, the same step-mode form as cozoo's;
* ``Flatten`` -> ``co.Lambda``; ``Linear`` -> ``co.Linear(channel_dim=1)``.

Padding semantics differ between the libraries by default: continual-inference emulates the source's
temporal zero padding at the start of a stream (outputs from step ``delay`` on), cozoo's default (valid)
warm-up drops the outputs that depend on it; cozoo's ``warmup="padded"`` emulates it too (its early outputs
are tested equal to these in tests/test_continual_timing.py). In steady state both compute the same
function of the last frames; `check_equivalence` compares them there. SlowFast cannot be expressed:
``co.Parallel``/``co.BroadcastReduce`` require every branch to have the same temporal stride, and its
pathways run at two rates with lateral connections between them.
"""

from __future__ import annotations

import copy
import functools
import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from cozoo.continual.pool import CoGlobalAvgPool3d
from cozoo.layers import blocks
from cozoo.layers.heads import VideoClassifier

_PER_FRAME = (nn.BatchNorm3d, nn.ReLU, nn.SiLU, nn.Sigmoid, nn.Dropout)
_SUPPORTED = (
    *_PER_FRAME, nn.Sequential, nn.Conv3d, nn.MaxPool3d, nn.AvgPool3d, nn.Linear, nn.Identity,
    blocks.Residual, blocks.SqueezeExcitation, blocks.GlobalAvgPool3d, blocks.Flatten, blocks.WindowAvgPool3d,
    blocks.WindowMean,
)


PADDING_NOTE = (
    "continual-inference emulates the source's temporal zero padding at the start of a stream (it emits "
    "from the first steps on); cozoo drops the outputs that depend on it (Co3D model shift); steady-state "
    "outputs are the same function of the last frames"
)
SLOWFAST_REASON = (
    "co.Parallel/co.BroadcastReduce assert that all branches share one temporal stride; SlowFast's pathways "
    "run at two rates with lateral connections between them, so it cannot be expressed in 1.2.4"
)


class PeerUnsupported(TypeError):
    """The model holds a module that continual-inference cannot express (the message says which)."""


def available() -> str | None:
    """The installed continual-inference version, or None when it is not importable."""
    try:
        import continual as co
    except ImportError:
        return None
    return str(co.__version__)


def unsupported_reason(regular: nn.Module) -> str | None:
    """Why ``regular`` cannot be converted by `to_co_inference`, or None if it can."""
    from cozoo.layers.pathways import SplitPathways

    for module in regular.modules():
        if isinstance(module, SplitPathways):
            return SLOWFAST_REASON
        if not isinstance(module, _SUPPORTED):
            return f"no continual-inference counterpart for {type(module).__name__}"
    return None


def global_pool_window(continual_model: nn.Module) -> int:
    """The window (in frames of the pool's input) of the single global pool of a cozoo continual model."""
    pools = [m for m in continual_model.modules() if isinstance(m, CoGlobalAvgPool3d)]
    if len(pools) != 1:
        raise PeerUnsupported(f"expected one global average pool, found {len(pools)}")
    return pools[0].window


def _flatten_frame(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)


def _box_means(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """A frame's means over every ``window`` box at stride 1 (a side shorter than the window whole)."""
    return F.avg_pool2d(x, [min(w, s) for w, s in zip(window, x.shape[-2:], strict=True)], stride=1)


def _frame_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(-2, -1), keepdim=True)


def to_co_inference(regular: nn.Module, pool_window: int) -> nn.Module:
    """A continual-inference network with the weights of the cozoo regular model ``regular`` (copied).

    ``pool_window`` is the global average pool's temporal window in frames of its input (use
    `global_pool_window` on the cozoo continual model to get the same window as ours).
    """
    reason = unsupported_reason(regular)
    if reason is not None:
        raise PeerUnsupported(reason)
    import continual as co

    def delay(d: int) -> nn.Module:
        return co.Delay(d, temporal_fill="zeros")

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, blocks.Residual):
            branch = convert(module.branch)
            shortcut = None if module.shortcut is None else convert(module.shortcut)
            lag = branch.delay - (0 if shortcut is None else shortcut.delay)
            if lag < 0:
                raise PeerUnsupported("a residual shortcut lags its branch")
            path = delay(lag) if shortcut is None else co.Sequential(delay(lag), shortcut)
            merged = co.BroadcastReduce(path, branch, reduce="sum", auto_delay=False)
            if module.activation is None:
                return merged
            return co.Sequential(merged, convert(module.activation))
        if isinstance(module, blocks.SqueezeExcitation):
            squeeze = co.Sequential(OrderedDict(
                pool=co.AdaptiveAvgPool3d((1, 1, 1), kernel_size=1),
                fc1=convert(module.fc1), relu=convert(module.relu),
                fc2=convert(module.fc2), gate=convert(module.gate),
            ))
            return co.BroadcastReduce(delay(0), squeeze, reduce="mul", auto_delay=False)
        if isinstance(module, blocks.GlobalAvgPool3d):
            return co.AdaptiveAvgPool3d((1, 1, 1), kernel_size=pool_window)
        if isinstance(module, blocks.WindowAvgPool3d):
            boxes = co.Lambda(functools.partial(_box_means, window=module.window[1:]))
            return co.Sequential(boxes, co.AvgPool3d((pool_window, 1, 1), stride=1, temporal_fill="zeros"))
        if isinstance(module, blocks.WindowMean):
            return co.Lambda(_frame_mean)
        if isinstance(module, blocks.Flatten):
            return co.Lambda(_flatten_frame)
        if type(module) in (nn.Sequential, VideoClassifier):  # a zoo model computes as its Sequential
            children = module.named_children()
            return co.Sequential(OrderedDict((name, convert(child)) for name, child in children))
        if type(module) is nn.Conv3d:
            return co.Conv3d.build_from(module, temporal_fill="zeros")
        if type(module) is nn.MaxPool3d:
            return co.MaxPool3d.build_from(module, temporal_fill="zeros")
        if type(module) is nn.AvgPool3d:
            return co.AvgPool3d.build_from(module, temporal_fill="zeros")
        if type(module) is nn.Linear:
            return co.Linear.build_from(module, channel_dim=1)
        if type(module) is nn.Identity:
            return delay(0)
        if type(module) in _PER_FRAME:
            return co.forward_stepping(module)
        raise PeerUnsupported(
            f"continual-inference has no counterpart for {type(module).__module__}.{type(module).__name__}"
        )

    peer = convert(copy.deepcopy(regular)).eval()
    param = next(regular.parameters())
    return peer.to(device=param.device, dtype=param.dtype)


def reset_peer(model: nn.Module) -> None:
    """Drop a continual-inference network's stream state."""
    model.clean_state()  # type: ignore[operator]


@dataclass(frozen=True)
class Equivalence:
    """Steady-state comparison of two step-mode models fed the same frames."""

    steps: int  # frames fed
    compared: int  # steps at which both emitted an output (cozoo's outputs are all padding-free)
    max_abs_diff: float
    max_abs_output: float

    @property
    def relative(self) -> float:
        return self.max_abs_diff / self.max_abs_output if self.max_abs_output else math.inf


@torch.no_grad()
def check_equivalence(ours: nn.Module, peer: nn.Module, frames: torch.Tensor) -> Equivalence:
    """Step ``ours`` (cozoo) and ``peer`` (continual-inference) through ``frames`` (N, C, T, H, W) from a
    fresh state; compare their outputs at every step where both emit (cozoo emits only once its
    receptive field holds no padding, so these are steady-state outputs)."""
    ours.reset()  # type: ignore[operator]
    reset_peer(peer)
    diff, largest, compared = 0.0, 0.0, 0
    for t in range(frames.shape[2]):
        mine = ours.forward_step(frames[:, :, t])  # type: ignore[operator]
        theirs = peer.forward_step(frames[:, :, t])  # type: ignore[operator]
        if mine is None or not isinstance(theirs, torch.Tensor):
            continue
        compared += 1
        diff = max(diff, (mine - theirs.reshape(mine.shape)).abs().max().item())
        largest = max(largest, mine.abs().max().item())
    ours.reset()  # type: ignore[operator]
    reset_peer(peer)
    if compared < 2:
        raise ValueError(f"only {compared} step(s) of {frames.shape[2]} had outputs from both models: "
                         "pass more frames")
    return Equivalence(frames.shape[2], compared, diff, largest)
