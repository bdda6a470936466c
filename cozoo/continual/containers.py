"""Continual containers: a sequence, and merges that align their input paths in time.

A merge (residual add, lateral fusion, concatenation) receives paths whose outputs were emitted on
different steps and lost different numbers of leading (padding-dependent) source elements. `Alignment`
works out, from the paths' schedules, which element of each path pairs with which: in clip mode as
crops, in step mode as FIFOs of each delayed path's last outputs (``lag`` of them when the path emits
with the trigger and is read before its push, else ``lag + 1``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn

from cozoo.continual.base import ContinualModule, Schedule, check_state_names, shift_in
from cozoo.continual.conv import CoConv3d
from cozoo.continual.fastpath import fold_pairs, foldable, folding_active


def continual_children(module: nn.Module) -> list[ContinualModule]:
    children = list(module.children())
    for child in children:
        if not isinstance(child, ContinualModule):
            raise TypeError(f"{type(module).__name__} holds a non-continual module {type(child).__name__}")
    return children  # type: ignore[return-value]


class ScheduledContainer(ContinualModule):
    """Temporal properties of a container, read off the schedule of its children as a stand-alone stream."""

    def _own_schedule(self) -> Schedule:
        schedule = self._schedule(Schedule(padded=self.warmup == "padded"), bind=False)
        if isinstance(schedule, list):
            raise TypeError(f"{type(self).__name__} outputs several pathways; ask each for its schedule")
        return schedule

    @property
    def receptive_field(self) -> int:
        return self._own_schedule().receptive_field

    @property
    def stride(self) -> int:
        return self._own_schedule().stride

    @property
    def temporal_padding(self) -> int:
        return self._own_schedule().padding

    @property
    def first_output(self) -> int:
        return self._own_schedule().first


class CoSequential(ScheduledContainer, nn.Sequential):
    """``nn.Sequential`` of continual modules; a step stops at the first child that yields nothing."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        if not self.takes_pathways:
            self.bind_schedule()

    @property
    def takes_pathways(self) -> bool:  # type: ignore[override]
        layers = continual_children(self)
        return bool(layers) and layers[0].takes_pathways

    @property
    def frame_rank(self) -> int | None:  # type: ignore[override]
        """The first rank a layer insists on (leading per-frame layers such as BatchNorm accept any)."""
        return next((layer.frame_rank for layer in continual_children(self) if layer.frame_rank is not None),
                    None)

    @property
    def expected_channels(self) -> int | None:
        for layer in continual_children(self):
            if layer.expected_channels is not None or layer.frame_rank is not None:
                return layer.expected_channels
        return None

    def _schedule(self, inp, bind: bool):  # type: ignore[override]
        for layer in continual_children(self):
            inp = layer._schedule(inp, bind)
        return inp

    def forward(self, x):  # type: ignore[override]
        self._check_clip(x)
        return super().forward(x)

    def _step(self, frame):  # type: ignore[override]
        if folding_active():
            return self._step_folded(frame)
        out = frame
        for layer in self._modules.values():  # children were checked when the schedule was bound
            out = layer._step(out)  # type: ignore[union-attr]
            if out is None:
                return None
        return out

    def _step_folded(self, frame):
        """Inference step with each eval-mode BatchNorm after a conv folded into that conv (`fastpath`)."""
        out = frame
        for layer, bn in self._fold_plan():
            out = layer._step(out) if bn is None else layer._step(out, bn)
            if out is None:
                return None
        return out

    def _fold_plan(self) -> list[tuple[ContinualModule, nn.Module | None]]:
        """(layer, BatchNorm folded into it or None) in order, folded BatchNorms left out; rebuilt when the
        children or their training flags change."""
        layers = tuple(self._modules.values())
        key = (layers, tuple(layer.training for layer in layers))
        cached = self.__dict__.get("_fold_plan_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        pairs = {i: bn for i, bn in fold_pairs(list(layers), CoConv3d).items() if foldable(bn)}
        folded = {i + 1 for i in pairs}
        plan = [(layer, pairs.get(i)) for i, layer in enumerate(layers) if i not in folded]
        self.__dict__["_fold_plan_cache"] = (key, plan)
        return plan


class CoIdentity(ContinualModule, nn.Identity):
    frame_rank = None

    def _step(self, frame: torch.Tensor) -> torch.Tensor:
        return frame


MergeMode = Literal["aligned", "latest"]


class Alignment:
    """How the outputs of several paths pair up at a merge.

    ``"aligned"``: paths share a stride; element j of every path (source index j) is merged, for the
    source indices that all paths have. ``"latest"``: the path with the largest stride triggers each
    output and the others contribute their most recent output (for pooled features of pathways that run
    at different rates).
    """

    def __init__(self, paths: Sequence[Schedule], mode: MergeMode = "aligned") -> None:
        self.mode = mode
        strides = [p.stride for p in paths]
        top = max(strides)
        if mode == "aligned" and len(set(strides)) != 1:
            raise ValueError(f"paths to merge have different temporal strides {strides}")
        if any(top % s for s in strides):
            raise ValueError(f"path strides {strides} do not divide the largest one")
        if mode == "aligned":
            j0 = max(p.skip for p in paths)
            emitted = [p.first + (j0 - p.skip) * top for p in paths]
            self.trigger = max(range(len(paths)), key=lambda i: emitted[i])
            self.starts = [j0 - p.skip for p in paths]
            self.lags = [(emitted[self.trigger] - e) // top for e in emitted]
            # A delayed path that emits on every step the trigger emits is read before its push.
            self.read_first = [
                lag > 0 and (emitted[self.trigger] - e) % top == 0
                for lag, e in zip(self.lags, emitted, strict=True)
            ]
            first, skip = emitted[self.trigger], j0
        else:
            self.trigger = strides.index(top)
            trigger = paths[self.trigger]
            warm = max(0, -(-(max(p.first for p in paths) - trigger.first) // top))
            first = trigger.first + warm * top
            self.starts = [(first - p.first) // p.stride for p in paths]
            self.lags = [0] * len(paths)
            self.read_first = [False] * len(paths)
            skip = trigger.skip + warm
        self.paths = list(paths)
        widest = max(paths, key=lambda p: p.receptive_field)
        self.output = Schedule(first, top, skip, widest.receptive_field, widest.padding,
                               max(p.span for p in paths), paths[0].padded)

    def fifo_depth(self, path: int) -> int:
        """Step-mode FIFO length of a non-trigger path: ``lag`` if read before its push, else ``lag + 1``."""
        return self.lags[path] + (0 if self.read_first[path] else 1)

    def crop(self, outputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Clip mode: the elements of each path's outputs that pair up, in order."""
        trigger_len = outputs[self.trigger].shape[2] - self.starts[self.trigger]
        if self.mode == "aligned":
            length = min(o.shape[2] - s for o, s in zip(outputs, self.starts, strict=True))
            return [o[:, :, s : s + max(length, 0)] for o, s in zip(outputs, self.starts, strict=True)]
        top = self.output.stride
        picked = []
        for out, start, path in zip(outputs, self.starts, self.paths, strict=True):
            index = torch.arange(max(trigger_len, 0), device=out.device) * (top // path.stride) + start
            picked.append(out.index_select(2, index))
        return picked


class AlignedMerge(ScheduledContainer, nn.Module):
    """Base for merges: holds per-path FIFOs for step mode and an `Alignment` bound to the model."""

    merge_mode: MergeMode = "aligned"

    def _align(self, paths: Sequence[Schedule], bind: bool) -> Schedule:
        alignment = Alignment(paths, self.merge_mode)
        if bind:  # one per warm-up mode
            self.__dict__["_padded_alignment" if paths[0].padded else "_alignment"] = alignment
        return alignment.output

    @property
    def alignment(self) -> Alignment:
        """The pairing of the current warm-up mode's stream (clip mode uses the valid one)."""
        if self.warmup == "padded" and "_padded_alignment" in self.__dict__:
            return self.__dict__["_padded_alignment"]
        return self.__dict__["_alignment"]

    def _reset_state(self) -> None:
        self.__dict__["_fifos"] = None
        self.__dict__["_trigger_seen"] = 0

    def stream_state(self) -> dict[str, torch.Tensor]:
        fifos = self.__dict__["_fifos"] or []
        return {f"fifo{i}": fifo for i, fifo in enumerate(fifos) if fifo is not None}

    def load_stream_state(self, state: dict[str, torch.Tensor]) -> None:
        check_state_names(self, state, self.stream_state())
        for name, fifo in state.items():
            self.__dict__["_fifos"][int(name.removeprefix("fifo"))] = fifo

    def _merge_step(
        self, values: Sequence[torch.Tensor | None], combine: Callable[[list[torch.Tensor]], torch.Tensor]
    ) -> torch.Tensor | None:
        """Step mode: store each path's new output; once the trigger path emits, ``combine`` the paired
        elements. A FIFO whose path emits on every trigger step is read before this step's value enters
        it (``lag`` slots, one copy per step for lag 1); others hold ``lag + 1`` and are read after."""
        alignment = self.alignment
        fifos = self.__dict__["_fifos"]
        if fifos is None:
            fifos = self.__dict__["_fifos"] = [None] * len(values)
        trigger = alignment.trigger
        deferred = []
        for i, value in enumerate(values):
            if value is None or i == trigger:  # the trigger's own output is used as it comes
                continue
            if fifos[i] is None:
                depth = alignment.fifo_depth(i)
                fifos[i] = self.new_state(value, *value.shape[:2], depth, *value.shape[2:])
            if alignment.read_first[i]:
                deferred.append(i)
            else:
                fifos[i] = shift_in(fifos[i], value)
        out = None
        if values[trigger] is not None:
            seen = self.__dict__["_trigger_seen"]
            self.__dict__["_trigger_seen"] = min(seen + 1, alignment.starts[trigger])  # saturates
            if seen >= alignment.starts[trigger]:
                out = combine([values[i] if i == trigger else fifo[:, :, 0] for i, fifo in enumerate(fifos)])
        for i in deferred:  # after `combine` has read (enqueued its reads of) the oldest element
            fifos[i] = shift_in(fifos[i], values[i])
        return out


class CoResidual(AlignedMerge):
    """``activation(branch(x) + shortcut(x))``, the shortcut delayed to pair with the branch's elements."""

    def __init__(
        self, branch: ContinualModule, shortcut: ContinualModule | None, activation: ContinualModule | None
    ) -> None:
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.activation = activation
        # Not registered as a child: it is `shortcut` itself (or a stateless identity).
        self.__dict__["_path"] = shortcut if shortcut is not None else CoIdentity()
        self.bind_schedule()
        self._reset_state()

    @property
    def frame_rank(self) -> int | None:  # type: ignore[override]
        return self.branch.frame_rank

    @property
    def expected_channels(self) -> int | None:
        return self.branch.expected_channels

    def _schedule(self, inp: Schedule, bind: bool) -> Schedule:
        paths = [self.branch._schedule(inp, bind), self.__dict__["_path"]._schedule(inp, bind)]
        return self._align(paths, bind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.branch(x)
        skip = x if self.shortcut is None else self.shortcut(x)
        if not self.source_padding:
            main, skip = self.alignment.crop([main, skip])
        out = main + skip
        return out if self.activation is None else self.activation(out)

    def _step(self, frame: torch.Tensor) -> torch.Tensor | None:
        main = self.branch._step(frame)
        skip = frame if self.shortcut is None else self.shortcut._step(frame)
        out = self._merge_step([main, skip], lambda paired: paired[0] + paired[1])
        if out is None or self.activation is None:
            return out
        return self.activation._step(out)
