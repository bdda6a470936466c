"""Bookkeeping of a pool of streams sharing one batched step, free of torch (an exported step reuses it).

A pool has ``capacity`` batch rows. A stream opened on the pool gets a row and an id (ids are never
reused, so a stale id is refused rather than fed into a newer stream). Each row counts its own frames;
from that count alone follow:

* which rows to set to their warm-up mode's initial state before the next step (rows of streams opened
  or reset since the last step);
* the *phase* a row's step runs in: a continual model's step depends on the frames seen, through the
  step counters of its strided layers, but only up to its period once warm (``settle`` frames). Rows in
  the same phase can share one batched step; rows in other phases must keep their state (masked);
* whether the step's output for a row is a prediction (the lone stream would emit one) or warm-up / a
  skipped strided step (the lone stream gives ``None``), and the frame index to stamp it with.

Each stream has a warm-up mode (a name, e.g. ``"valid"`` or ``"padded"``), fixed when it is opened or
reset, with its own `SlotSchedule`; rows share a step only with rows of the same mode and phase.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class SlotError(ValueError):
    """An id that names no open stream, or a full pool."""


def emits(frames_seen: int, first_output: int, stride: int) -> bool:
    """Whether a stream yields a prediction for the frame with 0-based index ``frames_seen``."""
    return frames_seen >= first_output and (frames_seen - first_output) % stride == 0


def phase(frames_seen: int, settle: int, period: int) -> int:
    """The step phase of a stream that has seen ``frames_seen`` frames: its own count during warm-up,
    then ``settle`` plus the count modulo ``period`` (the step repeats with the period once settled)."""
    if frames_seen < settle:
        return frames_seen
    return settle + (frames_seen - settle) % period


def next_phase(current: int, settle: int, period: int) -> int:
    """The phase after one more frame: ``phase(n + 1)`` for any ``n`` with ``phase(n) == current``."""
    return current + 1 if current + 1 < settle + period else settle


@dataclass(frozen=True)
class SlotSchedule:
    """A warm-up mode's schedule: ``first_output``/``stride``, when the model emits; ``settle``/``period``,
    when its step becomes periodic, and the period (see `phase`)."""

    first_output: int
    stride: int
    settle: int
    period: int

    def __post_init__(self) -> None:
        if self.stride < 1 or self.period < 1 or self.settle < 0 or self.first_output < 0:
            raise ValueError(f"bad schedule: first_output={self.first_output} stride={self.stride} "
                             f"settle={self.settle} period={self.period}")


@dataclass(frozen=True)
class Group:
    """Rows stepped together: all in one ``warmup`` mode and ``phase``; ``others_live`` says whether rows
    of other open streams exist (then the step must keep their state: a masked update)."""

    warmup: str
    phase: int
    rows: tuple[int, ...]
    others_live: bool


@dataclass(frozen=True)
class Plan:
    """What one push does: start ``fresh_rows`` from their mode's initial state, step each group, and
    for each pushed row whether its output is a prediction and the frame index it is stamped with."""

    fresh_rows: tuple[int, ...]
    groups: tuple[Group, ...]
    valid: dict[int, bool]
    frame_index: dict[int, int]


class SlotTable:
    """Ids, rows, warm-up modes and frame counts of the streams of a pool with ``capacity`` rows.

    ``schedules``: the `SlotSchedule` of each warm-up mode a stream may take; ``default``: the mode of a
    stream opened without one.
    """

    def __init__(self, capacity: int, schedules: Mapping[str, SlotSchedule], default: str) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        self.capacity = capacity
        self.schedules = dict(schedules)
        self.default = self._check_mode(default)
        self._ids: list[int | None] = [None] * capacity  # stream id per row
        self._rows: dict[int, int] = {}  # row per open stream id
        self._frames = [0] * capacity
        self._modes = [default] * capacity  # warm-up mode per row (a free row keeps its last one)
        self._pending_fresh: set[int] = set()
        self._next_id = 0

    def _check_mode(self, warmup: str) -> str:
        if warmup not in self.schedules:
            raise ValueError(f"warmup must be one of {sorted(self.schedules)}, got {warmup!r}")
        return warmup

    @property
    def live(self) -> list[int]:
        """Ids of the open streams, in the order they were opened."""
        return sorted(self._rows)

    def frames_seen(self, stream_id: int) -> int:
        return self._frames[self.row(stream_id)]

    def row(self, stream_id: int) -> int:
        """The batch row of an open stream; a clear error for a closed or unknown id."""
        row = self._rows.get(stream_id) if isinstance(stream_id, int) else None
        if row is None:
            known = isinstance(stream_id, int) and not isinstance(stream_id, bool)
            if known and 0 <= stream_id < self._next_id:
                raise SlotError(f"stream {stream_id} is closed")
            raise SlotError(f"unknown stream id {stream_id!r} (open streams: {self.live})")
        return row

    def warmup(self, stream_id: int) -> str:
        """The warm-up mode of an open stream."""
        return self._modes[self.row(stream_id)]

    def row_warmup(self, row: int) -> str:
        """The warm-up mode of the stream on ``row`` (a free row: its last stream's, or the default)."""
        return self._modes[row]

    def open(self, warmup: str | None = None) -> int:
        """A new stream on a free row (set to its mode's initial state before its first step); its id.
        ``warmup``: its warm-up mode (the table's default when None)."""
        mode = self.default if warmup is None else self._check_mode(warmup)
        try:
            row = self._ids.index(None)
        except ValueError:
            raise SlotError(
                f"the pool is full: all {self.capacity} streams are open; close one first"
            ) from None
        stream_id, self._next_id = self._next_id, self._next_id + 1
        self._ids[row], self._rows[stream_id] = stream_id, row
        self._restart(row, mode)
        return stream_id

    def close(self, stream_id: int) -> None:
        """Free the stream's row (its state is left as it is: set afresh when the row is reopened)."""
        row = self.row(stream_id)
        del self._rows[stream_id]
        self._ids[row] = None
        self._pending_fresh.discard(row)

    def reset(self, stream_id: int, warmup: str | None = None) -> None:
        """Start the stream anew: its row is set to its initial state before its next step and its frames
        count from 0. ``warmup``: a new warm-up mode (None keeps the stream's)."""
        row = self.row(stream_id)
        self._restart(row, self._modes[row] if warmup is None else self._check_mode(warmup))

    def _restart(self, row: int, warmup: str) -> None:
        self._frames[row] = 0
        self._modes[row] = warmup
        self._pending_fresh.add(row)

    def plan(self, stream_ids: Iterable[int]) -> Plan:
        """What pushing one frame to each of ``stream_ids`` does (nothing changes until `commit`)."""
        rows: list[int] = []
        for stream_id in stream_ids:
            row = self.row(stream_id)
            if row in rows:
                raise SlotError(f"stream {stream_id} is given twice")
            rows.append(row)
        by_phase: dict[tuple[str, int], list[int]] = {}
        for row in sorted(rows):
            schedule = self.schedules[self._modes[row]]
            key = (self._modes[row], phase(self._frames[row], schedule.settle, schedule.period))
            by_phase.setdefault(key, []).append(row)
        live = set(self._rows.values())
        groups = tuple(
            Group(mode, p, tuple(members), bool(live - set(members)))
            for (mode, p), members in sorted(by_phase.items())
        )
        valid = {}
        for row in rows:
            schedule = self.schedules[self._modes[row]]
            valid[row] = emits(self._frames[row], schedule.first_output, schedule.stride)
        return Plan(
            fresh_rows=tuple(sorted(self._pending_fresh)),
            groups=groups,
            valid=valid,
            frame_index={r: self._frames[r] for r in rows},
        )

    def commit(self, plan: Plan) -> None:
        """Record that ``plan`` was stepped: its fresh rows are set and each pushed row saw one more
        frame."""
        self._pending_fresh.difference_update(plan.fresh_rows)
        for group in plan.groups:
            for row in group.rows:
                self._frames[row] += 1

    def stream_id(self, row: int) -> int | None:
        return self._ids[row]
