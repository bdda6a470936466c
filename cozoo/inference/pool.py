"""Many independent streams through one model: each push is one batched step over a fixed set of rows.

A `Stream` runs N streams as one batch that starts, warms up and resets together. `StreamPool` gives each
stream its own batch row, opened, reset and closed at any moment, and fed at its own rate; each stream's
predictions are those of the same stream run alone through ``model.stream()``.

How (the bookkeeping is `cozoo.inference.slots`, free of torch):

* State tensors hold ``capacity`` rows, allocated once; a stream opened (or reset) on a row has the row
  set, before its first step, to the values a fresh stream of its warm-up mode starts from (each
  module's `initial_state_value`, with which a lone stream allocates its state: zeros, -inf for a max
  pool's cache). State a step allocates starts from those values in the rows of the other streams.
* What a step does depends on the frames a stream has seen (the step counters of strided layers, and
  warm-up). Rows are grouped by *phase* (`slots.phase`: their frame count during warm-up, then the count
  modulo the model's stride). Each group is one step of the whole batch with the model's counters set to
  that phase; when other open streams exist, the state rows outside the group are restored afterwards
  (a snapshot copy before the step, ``torch.where`` on a row mask after: in place, no allocation once
  every state tensor exists). Rows of streams without a frame in a push are likewise kept.
* Cost: one batched step (all ``capacity`` rows) per distinct phase among the pushed streams, plus two
  passes over the state per step when other streams must be kept. Stride-1 models (X3D, Slow, the
  baselines) run one step per push once their streams are warm; a model of stride P (I3D 2, R(2+1)D-50 4,
  SlowFast 4, R(2+1)D-18 and C3D 8) runs up to min(P, streams) steps when the streams are at different
  phases; a stream still warming up shares its step only with streams opened on the same push.
* Warm-up modes (``warmup=``, see `ContinualModule.reset`): ``"valid"`` (outputs once the receptive field
  holds real frames) or ``"padded"`` (the state starts as the source's zero padding; outputs from step
  ``delay``, as Co3D's). The pool has a default mode and each stream may take its own
  (``open(warmup=...)``). Both modes share the state tensors; each mode has its own schedule (first
  output, phases), so a group is one mode at one phase: streams of the two modes never share a step,
  even once warm (a warm valid and a warm padded stream at one stride phase cost two steps per push).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from cozoo.continual.base import WARMUP_MODES, ContinualModule, StreamError, check_warmup
from cozoo.continual.fastpath import ring_caches
from cozoo.continual.state import StateKey, StateLayout
from cozoo.continual.stream import Prediction, stamp
from cozoo.continual.timing import Timing, timing
from cozoo.inference.slots import Group, SlotError, SlotSchedule, SlotTable, next_phase

__all__ = ["SlotError", "StreamPool"]

#: A step of one warm-up mode at one phase: what counters, graphs and the step-repeat check are kept by.
PhaseKey = tuple[str, int]


@dataclass(frozen=True)
class _Mode:
    """What the pool reads off the model for one warm-up mode, right after ``model.reset(warmup=...)``."""

    schedule: SlotSchedule
    timing: Timing
    counters: tuple[int, ...]


class StreamPool:
    """Up to ``capacity`` independent streams over one eval-mode continual ``model`` (which the pool owns:
    do not step or reset it elsewhere while the pool is in use).

    ``push({id: frame})`` takes one frame (C, H, W) per stream and returns, for every id pushed, a
    `Prediction` (``logits`` of shape (1, classes), as a lone stream of batch 1 gives; ``frame_index``
    counts that stream's own frames) or ``None`` during its warm-up and on steps its stride skips.
    ``cuda_graphs=True`` (a model on CUDA) replays each settled phase's step, masks included, as one CUDA
    graph; warm-up phases run eagerly. ``warmup``: the warm-up mode of a stream opened without one
    (``"valid"`` or ``"padded"``, see `ContinualModule.reset`); ``open(warmup=...)`` picks a stream's own.
    Between pushes the model's modules are in the default mode (``model.first_output`` is that mode's).
    """

    def __init__(self, model: nn.Module, capacity: int = 8, cuda_graphs: bool = False,
                 warmup: str = "valid") -> None:
        check_warmup(warmup)
        if not isinstance(model, ContinualModule):
            raise TypeError(f"{type(model).__name__} is not continual; convert it with to_continual()")
        if model.training:
            raise ValueError("model is in training mode: call model.eval() before streaming")
        param = next(model.parameters(), None)
        if param is None:
            raise ValueError("model has no parameters: nothing fixes the device and dtype of its frames")
        if cuda_graphs and not param.is_cuda:
            raise ValueError("cuda_graphs=True needs the model on a CUDA device (model.cuda()); CPU steps "
                             "run eagerly")
        self.model = model
        self.cuda_graphs = cuda_graphs
        self.dtype, self.device = param.dtype, param.device
        self.warmup = warmup
        self._layout = StateLayout(model)
        self._unsupported: dict[str, str] = {}  # mode -> why the model has no such warm-up
        self._modes = self._read_modes(model)
        if warmup not in self._modes:
            raise ValueError(self._unsupported[warmup])
        model.reset(warmup=warmup)
        self.delay, self.stride = model.delay, model.stride
        self.first_output = self._modes[warmup].schedule.first_output
        self.timing = self._modes[warmup].timing  # stamps each prediction with its frames
        self._slots = SlotTable(capacity, {m: mode.schedule for m, mode in self._modes.items()}, warmup)
        self._frame_shape: tuple[int, ...] | None = None
        self._start()

    def _read_modes(self, model: nn.Module) -> dict[str, _Mode]:
        """Each warm-up mode's schedule, timing and starting counters (resets the model)."""
        modes = {}
        for mode in WARMUP_MODES:
            try:
                model.reset(warmup=mode)
            except ValueError as error:  # a model whose source padding cannot be stood in for
                self._unsupported[mode] = str(error)
                continue
            first, stride = model.first_output, model.stride
            # Every module has emitted and allocated its state after first_output + stride frames; from
            # then on the step repeats with the model's stride (as `CudaGraphStepper` relies on too).
            modes[mode] = _Mode(SlotSchedule(first, stride, settle=first + stride, period=stride),
                                timing(model), self._layout.counters())
        return modes

    def _start(self) -> None:
        """Fresh buffers and phase counters (the model was just reset to the default mode)."""
        self._counters: dict[PhaseKey, tuple[int, ...]] = {(m, 0): mode.counters for m, mode in
                                                           self._modes.items()}
        self._wrapped: set[str] = set()  # modes whose step has wrapped round to their first settled phase
        self._mode_now = self.warmup  # the mode the model's modules are set to
        self._backups: dict[StateKey, torch.Tensor] = {}
        self._state: list[tuple[StateKey, torch.Tensor, int]] | None = None  # see `_tensors`
        self._graphs: dict[PhaseKey, tuple[torch.cuda.CUDAGraph, torch.Tensor | None]] = {}
        self._frames: torch.Tensor | None = None  # the step's input: one row per slot
        self._keep: torch.Tensor | None = None  # rows a masked step updates

    # -- streams ---------------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._slots.capacity

    @property
    def live(self) -> list[int]:
        """Ids of the open streams."""
        return self._slots.live

    def open(self, warmup: str | None = None) -> int:
        """Open a stream (it warms up on its own, in mode ``warmup``: the pool's when None); its id.
        `SlotError` when all rows are taken."""
        return self._slots.open(self._check_mode(warmup))

    def close(self, stream_id: int) -> None:
        """Close a stream; its row is free for the next `open`."""
        self._slots.close(stream_id)

    def reset(self, stream_id: int, warmup: str | None = None) -> None:
        """Start the stream anew (it warms up again, in mode ``warmup``, its own when None; its frames
        count from 0)."""
        self._slots.reset(stream_id, None if warmup is None else self._check_mode(warmup))

    def frames_seen(self, stream_id: int) -> int:
        return self._slots.frames_seen(stream_id)

    def warmup_of(self, stream_id: int) -> str:
        """The warm-up mode of an open stream."""
        return self._slots.warmup(stream_id)

    def first_output_of(self, warmup: str) -> int:
        """The 0-based frame of a stream's first prediction in warm-up mode ``warmup``."""
        return self._modes[self._check_mode(warmup)].schedule.first_output

    def _check_mode(self, warmup: str | None) -> str:
        """A warm-up mode streams of this pool can take (the pool's own for None); clear errors else."""
        if warmup is None:
            return self.warmup
        check_warmup(warmup)
        if warmup not in self._modes:
            raise ValueError(self._unsupported[warmup])
        return warmup

    # -- stepping --------------------------------------------------------------------------------------
    @torch.no_grad()
    def push(self, frames: Mapping[int, torch.Tensor]) -> dict[int, Prediction | None]:
        """One frame for each of some open streams -> their predictions (``None`` during warm-up and on
        skipped strided steps). Nothing changes when a frame or id is refused."""
        if not isinstance(frames, Mapping):
            raise TypeError(f"push expects a mapping {{stream id: frame}}, got {type(frames).__name__}")
        if self.model.training:
            raise ValueError("model was switched to training mode: call model.eval() to stream")
        plan = self._slots.plan(frames)
        for stream_id, frame in frames.items():
            self._check_frame(stream_id, frame)
        if not frames:
            return {}
        if self._frames is not None and not self.model.in_stream:
            raise StreamError("the model was reset or stepped outside this pool: its streams' state is gone; "
                              "make a new pool")
        if self._frames is None:
            self._allocate(next(iter(frames.values())))
        assert self._frames is not None
        for stream_id, frame in frames.items():
            self._frames[self._slots.row(stream_id)].copy_(frame)
        try:  # shifted caches, not rings (a fast path): a ring's slot moves for every row, a stream's may not
            self._fresh_rows(plan.fresh_rows)
            with ring_caches(False):
                outputs = {group: self._step_group(group) for group in plan.groups}
            self._use_mode(self.warmup)  # the model reads as the pool's default mode between pushes
        except BaseException:
            self._lose_all()
            raise
        self._slots.commit(plan)
        predictions: dict[int, Prediction | None] = {}
        for group, out in outputs.items():
            mode = self._modes[group.warmup]
            for row in group.rows:
                if plan.valid[row] != (out is not None):
                    raise RuntimeError(f"the model's step at phase {group.phase} disagrees with its "
                                       f"{group.warmup!r} schedule (first output "
                                       f"{mode.schedule.first_output}, stride {self.stride})")
                stream_id = self._slots.stream_id(row)
                assert stream_id is not None
                logits = None if out is None else out[row : row + 1].clone()
                index = plan.frame_index[row]
                predictions[stream_id] = None if logits is None else stamp(logits, index, mode.timing)
        return {stream_id: predictions[stream_id] for stream_id in frames}

    def _check_frame(self, stream_id: int, frame: object) -> None:
        where = f"stream {stream_id}:"
        if not isinstance(frame, torch.Tensor):
            raise StreamError(f"{where} expected a frame tensor (C, H, W), got {type(frame).__name__}")
        shape = tuple(frame.shape)
        if frame.dim() != 3:
            raise StreamError(f"{where} expected one frame (C, H, W), got shape {shape}")
        if frame.dtype != self.dtype or frame.device != self.device:
            raise StreamError(f"{where} frame is {frame.dtype} on {frame.device} but the model is "
                              f"{self.dtype} on {self.device}")
        channels = self.model.expected_channels
        if channels is not None and frame.shape[0] != channels:
            raise StreamError(f"{where} expected {channels} channels, got shape {shape}")
        if self._frame_shape is not None and shape != self._frame_shape:
            raise StreamError(f"{where} frame of shape {shape}, but the pool takes {self._frame_shape}")

    def _allocate(self, frame: torch.Tensor) -> None:
        self._frame_shape = tuple(frame.shape)
        self._frames = frame.new_zeros(self.capacity, *frame.shape)
        self._keep = torch.zeros(self.capacity, dtype=torch.bool, device=self.device)

    def _set_mask(self, rows: tuple[int, ...]) -> None:
        assert self._keep is not None
        keep = [False] * self.capacity
        for row in rows:
            keep[row] = True
        self._keep.copy_(torch.tensor(keep))

    def _use_mode(self, warmup: str) -> None:
        """Set the model's modules to a warm-up mode (its schedule: the counters are set per step)."""
        if warmup != self._mode_now:
            self._layout.set_warmup(warmup)
            self._mode_now = warmup

    def _fill_initial(self, rows: list[int], tensors: list[tuple[StateKey, torch.Tensor, int]]) -> None:
        """Set ``rows`` of ``tensors`` to the values a fresh stream starts from, each row in its stream's
        mode (a free row in its last stream's)."""
        by_mode: dict[str, list[int]] = {}
        for row in rows:
            by_mode.setdefault(self._slots.row_warmup(row), []).append(row)
        current = self._mode_now
        for mode, members in by_mode.items():
            self._use_mode(mode)
            self._set_mask(tuple(members))
            for key, state, dim in tensors:
                state.masked_fill_(_rows_view(self._keep, state, dim), self._layout.initial_value(key))
        self._use_mode(current)

    def _fresh_rows(self, rows: tuple[int, ...]) -> None:
        """Rows of streams opened or reset since the last step start from their mode's initial state."""
        if rows:
            self._fill_initial(list(rows), self._tensors())

    def _step_group(self, group: Group) -> torch.Tensor | None:
        """One batched step in ``group.warmup`` mode with the model's counters at ``group.phase``; the state
        of rows outside the group is kept when other streams are open."""
        schedule = self._slots.schedules[group.warmup]
        key = (group.warmup, group.phase)
        following = (group.warmup, next_phase(group.phase, schedule.settle, schedule.period))
        first_time = following not in self._counters  # the only steps that can allocate state
        self._use_mode(group.warmup)
        self._layout.set_counters(self._counters[key])
        if self.cuda_graphs and group.phase >= schedule.settle:
            out = self._replay(key, group)
        else:
            masked = group.others_live
            if masked:
                self._set_mask(group.rows)
                self._snapshot()
            out = self._step_model()
            if first_time:
                self._state = None
                self._layout.check_known_state()
            if masked:
                self._restore()
                allocated = [t for t in self._tensors() if t[0] not in self._snapshot_keys]
                if allocated:  # no other stream had reached these modules: they start fresh there
                    members = set(group.rows)
                    self._fill_initial([r for r in range(self.capacity) if r not in members], allocated)
        if first_time:
            self._counters[following] = self._layout.counters()
        elif following[1] == schedule.settle and group.warmup not in self._wrapped and not self.cuda_graphs:
            self._wrapped.add(group.warmup)  # once per mode: verify
            if self._layout.counters() != self._counters[following]:
                raise RuntimeError(f"the model's step does not repeat with its stride {self.stride} after "
                                   f"{schedule.settle} frames ({group.warmup!r} warm-up): its streams "
                                   "cannot share a step")
        return out

    def _step_model(self) -> torch.Tensor | None:
        if self.model.in_stream:  # frame checked at the first step; the input buffer never changes
            return self.model._step(self._frames)  # type: ignore[attr-defined]
        return self.model.forward_step(self._frames)  # type: ignore[attr-defined]

    def _tensors(self) -> list[tuple[StateKey, torch.Tensor, int]]:
        """The model's state tensors, listed again only after a step that may have allocated some (state
        is updated in place after allocation)."""
        if self._state is None:
            self._state = list(self._layout.tensors())
        return self._state

    def _snapshot(self) -> None:
        """Copy every allocated state tensor into its backup (allocated once per tensor)."""
        for key, state, _ in self._tensors():
            backup = self._backups.get(key)
            if backup is None or backup.shape != state.shape:
                backup = self._backups[key] = torch.empty_like(state)
            backup.copy_(state)
        self._snapshot_keys = {key for key, _, _ in self._tensors()}

    def _restore(self) -> None:
        """Rows outside the mask get their snapshot back (state allocated by this step is left to
        `_fill_initial`)."""
        assert self._keep is not None
        for key, state, dim in self._tensors():
            if key in self._snapshot_keys:
                torch.where(_rows_view(self._keep, state, dim), state, self._backups[key], out=state)

    def _replay(self, key: PhaseKey, group: Group) -> torch.Tensor | None:
        """A settled phase as a CUDA graph of snapshot, step and masked restore (captured on first use)."""
        self._set_mask(group.rows)
        if key not in self._graphs:
            for key, state, _ in self._tensors():  # every state tensor exists once settled
                if key not in self._backups or self._backups[key].shape != state.shape:
                    self._backups[key] = torch.empty_like(state)
            self.model._check_frame(self._frames)  # type: ignore[attr-defined]
            pool = next(iter(self._graphs.values()))[0].pool() if self._graphs else None
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self._snapshot()
                out = self.model._step(self._frames)  # type: ignore[attr-defined]
                self._restore()
            self._graphs[key] = (graph, out)
        graph, out = self._graphs[key]
        graph.replay()
        return out

    def _lose_all(self) -> None:
        """A step failed part-way (the model reset itself): every open stream starts over."""
        self.model.reset(warmup=self.warmup)
        for stream_id in self._slots.live:
            self._slots.reset(stream_id)
        self._start()


def _rows_view(mask: torch.Tensor, like: torch.Tensor, batch_dim: int) -> torch.Tensor:
    """A (capacity,) row mask shaped to broadcast over a state tensor with the batch on ``batch_dim``."""
    return mask.view(*([1] * batch_dim), -1, *([1] * (like.dim() - batch_dim - 1)))
