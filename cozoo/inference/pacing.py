"""Pacing between sources and the model: one reader thread per source feeding a bounded buffer.

Policy when the model is slower than a live source (documented in the README):

1. The model's own frame-rate rule drops first: only the frames the model steps on (every
   ``sampling_rate``-th frame, or the frames on screen at its ``target_fps`` instants) are queued
   (`skipped` counts the others; with an annotated video they are queued too, to be drawn).
2. The buffer holds at most ``capacity`` frames per source. When a live source's buffer is full the
   oldest frame queued only to be drawn is dropped, or if there is none the **oldest** queued frame
   (`dropped`): the model always works on the newest frames, so the delay behind real time stays bounded
   by ``capacity`` frames plus one model step.

A file is never dropped from: its reader waits for room (read as fast as the model goes). With
``realtime`` it is paced by its timestamps, as if it were live, and then drops like a live source.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass

from cozoo.inference.sources import SourceFrame


@dataclass(frozen=True)
class QueuedFrame:
    """A frame on its way to the model. ``steps``: model steps that take it (0: only to be drawn);
    ``due``: the `time.monotonic` at which it was live (arrival, or its timestamp when paced), None for a
    file read as fast as possible."""

    frame: SourceFrame
    steps: int
    due: float | None


@dataclass
class SourceCounts:
    """Per-source counters: frames decoded, skipped by the model's frame-rate rule, dropped by the buffer
    (``dropped_steps``: those the model would have stepped on), and the buffer's high-water mark."""

    decoded: int = 0
    skipped: int = 0
    dropped: int = 0
    dropped_steps: int = 0
    high_water: int = 0


class FrameBuffer:
    """Bounded per-source queues shared by reader threads (`put`) and the model loop (`take`)."""

    def __init__(self, sources: int, capacity: int, drop_oldest: list[bool]) -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self.queues: list[deque[QueuedFrame]] = [deque() for _ in range(sources)]
        self.counts = [SourceCounts() for _ in range(sources)]
        self.ended = [False] * sources
        self.errors: list[BaseException | None] = [None] * sources
        self.closed = False
        self._cond = threading.Condition()

    def put(self, source: int, item: QueuedFrame) -> bool:
        """Queue ``item``; False once the buffer is closed (the reader should stop)."""
        with self._cond:
            queue, counts = self.queues[source], self.counts[source]
            while len(queue) >= self.capacity and not self.closed:
                if self.drop_oldest[source]:
                    # a frame queued only to be drawn goes first; then the oldest
                    old = next((q for q in queue if not q.steps), queue[0])
                    queue.remove(old)
                    counts.dropped += 1
                    counts.dropped_steps += old.steps
                else:
                    self._cond.wait(0.1)
            if self.closed:
                return False
            queue.append(item)
            counts.high_water = max(counts.high_water, len(queue))
            self._cond.notify_all()
            return True

    def end(self, source: int, error: BaseException | None = None) -> None:
        """The reader of ``source`` is done (``error``: why it failed)."""
        with self._cond:
            self.ended[source], self.errors[source] = True, error
            self._cond.notify_all()

    def take(self, timeout: float = 0.1) -> dict[int, QueuedFrame] | None:
        """The oldest queued frame of every source that has one (waits up to ``timeout`` for any); ``{}``
        if none came in time, None when every source has ended and been drained, or the buffer was closed."""
        with self._cond:
            if self.closed:
                return None
            if not any(self.queues):
                if all(self.ended):
                    return None
                self._cond.wait(timeout)
            items = {i: q.popleft() for i, q in enumerate(self.queues) if q}
            if items:
                self._cond.notify_all()
            return items

    def close(self) -> None:
        """Stop: readers blocked in `put` return False."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def start_reader(
    buffer: FrameBuffer,
    source: int,
    frames: Generator[SourceFrame, None, None],
    steps_at: Callable[[SourceFrame], int],
    keep_all: bool,
    live: bool,
    realtime: bool,
) -> threading.Thread:
    """A daemon thread moving ``frames`` into ``buffer`` (see the module's policy). ``steps_at``: model steps
    taking a frame (the model's frame-rate rule); ``keep_all``: queue the other frames too (to be drawn);
    ``realtime``: pace a file by its timestamps."""

    def run() -> None:
        counts = buffer.counts[source]
        start: tuple[float, float] | None = None  # (monotonic, pts) of the first frame, for pacing
        try:
            for frame in frames:
                counts.decoded += 1
                due: float | None = frame.arrived if live else None
                if realtime and not live:
                    if start is None:
                        start = (time.monotonic(), frame.pts or 0.0)
                    due = start[0] + (frame.pts or 0.0) - start[1]
                    time.sleep(max(0.0, due - time.monotonic()))
                steps = steps_at(frame)
                if not steps:
                    counts.skipped += 1
                    if not keep_all:
                        continue
                if not buffer.put(source, QueuedFrame(frame, steps, due)):
                    break
        except BaseException as err:  # handed to the model loop, which reports it
            buffer.end(source, err)
            return
        finally:
            frames.close()  # closes the container now, not when the generator is collected
        buffer.end(source)

    thread = threading.Thread(target=run, name=f"cozoo-source-{source}", daemon=True)
    thread.start()
    return thread
