"""Multi-rate pathways (SlowFast): lists of streams that step at different rates.

A list flows through the network, one entry per pathway; in step mode an entry is ``None`` on the steps
where that pathway emits nothing. The slow pathway samples every alpha-th frame; lateral connections
(a strided temporal conv on the fast pathway) are aligned with the slow pathway by `Alignment` before
concatenation; the head takes each pathway's latest pooled features whenever the slow pathway emits.
"""

from __future__ import annotations

import torch
from torch import nn

from cozoo.continual.base import ContinualModule, Schedule
from cozoo.continual.containers import AlignedMerge, MergeMode, continual_children
from cozoo.continual.convert import ConversionOptions, convert_module, register_continual
from cozoo.layers.pathways import ConcatPathways, FuseFastToSlow, Pathways, SplitPathways


class CoSplitPathways(ContinualModule, nn.Module):
    """Frame -> ``[slow, fast]``: the slow entry is the frame on every alpha-th step, else ``None``."""

    def __init__(self, split: SplitPathways, options: ConversionOptions) -> None:
        super().__init__()
        self.alpha = split.alpha
        self.slow_sampler = convert_module(split.slow_sampler, options)

    def _schedule(self, inp, bind: bool):  # type: ignore[override]
        return [self.slow_sampler._schedule(inp, bind), inp]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.slow_sampler(x), x]

    def _step(self, frame):  # type: ignore[override]
        return [self.slow_sampler._step(frame), frame]


class CoPathways(ContinualModule, nn.ModuleList):
    """Module i steps entry i of the list (when it is not ``None``)."""

    frame_rank = None
    takes_pathways = True

    def _schedule(self, inp, bind: bool):  # type: ignore[override]
        return [m._schedule(s, bind) for m, s in zip(continual_children(self), inp, strict=True)]

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [m(x) for m, x in zip(self, xs, strict=True)]

    def _step(self, frames):  # type: ignore[override]
        return [
            None if f is None else m._step(f) for m, f in zip(continual_children(self), frames, strict=True)
        ]


class CoFuseFastToSlow(AlignedMerge):
    """``[slow, fast] -> [cat(slow, lateral(fast)), fast]``, the lateral output aligned to the slow one."""

    takes_pathways = True

    def __init__(self, fuse: FuseFastToSlow, options: ConversionOptions) -> None:
        super().__init__()
        self.conv = convert_module(fuse.conv, options)
        self.bn = convert_module(fuse.bn, options)
        self.activation = convert_module(fuse.activation, options)
        self._reset_state()

    def _schedule(self, inp, bind: bool):  # type: ignore[override]
        slow, fast = inp
        lateral = fast
        for layer in (self.conv, self.bn, self.activation):
            lateral = layer._schedule(lateral, bind)
        return [self._align([slow, lateral], bind), fast]

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        slow, fast = xs
        lateral = self.activation(self.bn(self.conv(fast)))
        if not self.source_padding:
            slow, lateral = self.alignment.crop([slow, lateral])
        return [torch.cat([slow, lateral], dim=1), fast]

    def _step(self, frames):  # type: ignore[override]
        slow, fast = frames
        lateral = None
        if fast is not None:
            lateral = self.conv._step(fast)
            if lateral is not None:
                lateral = self.activation._step(self.bn._step(lateral))
        return [self._merge_step([slow, lateral], lambda paired: torch.cat(paired, dim=1)), fast]


class CoConcatPathways(AlignedMerge):
    """Concatenate pathway features; the slowest pathway triggers, the others give their latest output."""

    merge_mode: MergeMode = "latest"
    takes_pathways = True

    def __init__(self) -> None:
        super().__init__()
        self._reset_state()

    def _schedule(self, inp: list[Schedule], bind: bool) -> Schedule:  # type: ignore[override]
        return self._align(inp, bind)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        if not self.source_padding:
            xs = self.alignment.crop(xs)
        return torch.cat(xs, dim=1)

    def _step(self, frames):  # type: ignore[override]
        return self._merge_step(frames, lambda paired: torch.cat(paired, dim=1))


@register_continual(SplitPathways)
def _split(module: nn.Module, options: ConversionOptions) -> nn.Module:
    return CoSplitPathways(module, options)  # type: ignore[arg-type]


@register_continual(Pathways)
def _pathways(module: nn.Module, options: ConversionOptions) -> nn.Module:
    return CoPathways([convert_module(m, options) for m in module])


@register_continual(FuseFastToSlow)
def _fuse(module: nn.Module, options: ConversionOptions) -> nn.Module:
    return CoFuseFastToSlow(module, options)  # type: ignore[arg-type]


@register_continual(ConcatPathways)
def _concat(module: nn.Module, options: ConversionOptions) -> nn.Module:
    return CoConcatPathways()
