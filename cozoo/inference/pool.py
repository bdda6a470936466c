"""Many independent streams through one model: each push is one batched step over a fixed set of rows.

A `Stream` runs N streams as one batch that starts, warms up and resets together. `StreamPool` gives each
stream its own batch row, opened, reset and closed at any moment, and fed at its own rate; each stream's
predictions are those of the same stream run alone through ``model.stream()``.

How (the bookkeeping is `cozoo.inference.slots`, free of torch):

* State tensors hold ``capacity`` rows, allocated once; a stream opened (or reset) on a row has the row
  zeroed before its first step, which is the state a fresh stream starts from.
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
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from cozoo.continual.base import ContinualModule, StreamError
from cozoo.continual.fastpath import ring_caches
from cozoo.continual.state import StateKey, StateLayout
from cozoo.continual.stream import Prediction, stamp
from cozoo.continual.timing import timing
from cozoo.inference.slots import Group, SlotError, SlotTable, next_phase

__all__ = ["SlotError", "StreamPool"]


class StreamPool:
    """Up to ``capacity`` independent streams over one eval-mode continual ``model`` (which the pool owns:
    do not step or reset it elsewhere while the pool is in use).

    ``push({id: frame})`` takes one frame (C, H, W) per stream and returns, for every id pushed, a
    `Prediction` (``logits`` of shape (1, classes), as a lone stream of batch 1 gives; ``frame_index``
    counts that stream's own frames) or ``None`` during its warm-up and on steps its stride skips.
    ``cuda_graphs=True`` (a model on CUDA) replays each settled phase's step, masks included, as one CUDA
    graph; warm-up phases run eagerly.
    """

    def __init__(self, model: nn.Module, capacity: int = 8, cuda_graphs: bool = False) -> None:
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
        model.reset()
        self.model = model
        self.cuda_graphs = cuda_graphs
        self.dtype, self.device = param.dtype, param.device
        self.delay, self.first_output, self.stride = model.delay, model.first_output, model.stride
        self.timing = timing(model)  # stamps each prediction with its frames
        # Every module has emitted and allocated its state after first_output + stride frames; from then
        # on the step repeats with the model's stride (as `CudaGraphStepper` relies on too).
        self._slots = SlotTable(capacity, self.first_output, self.stride,
                                settle=self.first_output + self.stride, period=self.stride)
        self._layout = StateLayout(model)
        self._frame_shape: tuple[int, ...] | None = None
        self._start()

    def _start(self) -> None:
        """Fresh buffers and phase counters (the model was just reset)."""
        self._counters: dict[int, tuple[int, ...]] = {0: self._layout.counters()}  # by phase
        self._wrapped = False  # whether a step has wrapped round to the first settled phase
        self._backups: dict[StateKey, torch.Tensor] = {}
        self._state: list[tuple[StateKey, torch.Tensor, int]] | None = None  # see `_tensors`
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor | None]] = {}
        self._frames: torch.Tensor | None = None  # the step's input: one row per slot
        self._keep: torch.Tensor | None = None  # rows a masked step updates
        self._drop: torch.Tensor | None = None

    # -- streams ---------------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._slots.capacity

    @property
    def live(self) -> list[int]:
        """Ids of the open streams."""
        return self._slots.live

    def open(self) -> int:
        """Open a stream (it warms up on its own); its id. `SlotError` when all rows are taken."""
        return self._slots.open()

    def close(self, stream_id: int) -> None:
        """Close a stream; its row is free for the next `open`."""
        self._slots.close(stream_id)

    def reset(self, stream_id: int) -> None:
        """Start the stream anew (it warms up again; its frames count from 0)."""
        self._slots.reset(stream_id)

    def frames_seen(self, stream_id: int) -> int:
        return self._slots.frames_seen(stream_id)

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
            self._zero_rows(plan.zero_rows)
            with ring_caches(False):
                outputs = {group: self._step_group(group) for group in plan.groups}
        except BaseException:
            self._lose_all()
            raise
        self._slots.commit(plan)
        predictions: dict[int, Prediction | None] = {}
        for group, out in outputs.items():
            for row in group.rows:
                if plan.valid[row] != (out is not None):
                    raise RuntimeError(f"the model's step at phase {group.phase} disagrees with its schedule "
                                       f"(first output {self.first_output}, stride {self.stride})")
                stream_id = self._slots.stream_id(row)
                assert stream_id is not None
                logits = None if out is None else out[row : row + 1].clone()
                index = plan.frame_index[row]
                predictions[stream_id] = None if logits is None else stamp(logits, index, self.timing)
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
        self._drop = torch.zeros_like(self._keep)

    def _set_mask(self, rows: tuple[int, ...]) -> None:
        assert self._keep is not None and self._drop is not None
        keep = [False] * self.capacity
        for row in rows:
            keep[row] = True
        self._keep.copy_(torch.tensor(keep))
        torch.logical_not(self._keep, out=self._drop)

    def _zero_rows(self, rows: tuple[int, ...]) -> None:
        """Rows of streams opened or reset since the last step start from zero state."""
        if not rows:
            return
        self._set_mask(rows)
        for _, state, dim in self._tensors():
            state.masked_fill_(_rows_view(self._keep, state, dim), 0)

    def _step_group(self, group: Group) -> torch.Tensor | None:
        """One batched step with the model's counters at ``group.phase``; the state of rows outside the
        group is kept when other streams are open."""
        following = next_phase(group.phase, self._slots.settle, self._slots.period)
        first_time = following not in self._counters  # the only steps that can allocate state
        self._layout.set_counters(self._counters[group.phase])
        if self.cuda_graphs and group.phase >= self._slots.settle:
            out = self._replay(group)
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
        if first_time:
            self._counters[following] = self._layout.counters()
        elif following == self._slots.settle and not (self._wrapped or self.cuda_graphs):  # once: verify
            self._wrapped = True
            if self._layout.counters() != self._counters[following]:
                raise RuntimeError(f"the model's step does not repeat with its stride {self.stride} after "
                                   f"{self._slots.settle} frames: its streams cannot share a step")
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
        """Rows outside the mask get their snapshot back; state allocated by this step starts from zero in
        those rows (no stream had reached its module before)."""
        assert self._keep is not None and self._drop is not None
        for key, state, dim in self._tensors():
            if key in self._snapshot_keys:
                torch.where(_rows_view(self._keep, state, dim), state, self._backups[key], out=state)
            else:
                state.masked_fill_(_rows_view(self._drop, state, dim), 0)

    def _replay(self, group: Group) -> torch.Tensor | None:
        """A settled phase as a CUDA graph of snapshot, step and masked restore (captured on first use)."""
        self._set_mask(group.rows)
        if group.phase not in self._graphs:
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
            self._graphs[group.phase] = (graph, out)
        graph, out = self._graphs[group.phase]
        graph.replay()
        return out

    def _lose_all(self) -> None:
        """A step failed part-way (the model reset itself): every open stream starts over."""
        self.model.reset()
        for stream_id in self._slots.live:
            self._slots.reset(stream_id)
        self._start()


def _rows_view(mask: torch.Tensor, like: torch.Tensor, batch_dim: int) -> torch.Tensor:
    """A (capacity,) row mask shaped to broadcast over a state tensor with the batch on ``batch_dim``."""
    return mask.view(*([1] * batch_dim), -1, *([1] * (like.dim() - batch_dim - 1)))
