"""One model, one or many sources (files, network streams, cameras): the loop behind ``cozoo stream``.

Each source has a reader thread (`cozoo.inference.pacing`) feeding a bounded buffer; the model loop takes
the oldest queued frame of every source that has one, transforms them, and steps the model once for all
of them through a `StreamBatcher` (``open`` a slot per source, ``push`` a dict of frames, ``reset`` a slot
on reconnect, ``close``): by default the stream pool (`cozoo.inference.pool.StreamPool`), one batched step
for all sources, each source's predictions equal to its own stream run alone.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from cozoo.continual.stream import Prediction
from cozoo.inference.annotate import AnnotatedWriter, draw_overlay
from cozoo.inference.jsonl import JsonLines
from cozoo.inference.pacing import FrameBuffer, QueuedFrame, start_reader
from cozoo.inference.pool import StreamPool
from cozoo.inference.sources import ReconnectPolicy, SourceFrame, SourceSpec, read_source
from cozoo.inference.video import FramePrediction, FrameTransform
from cozoo.timeline import steps_at_frame


class StreamBatcher(Protocol):
    """Steps one continual model for several streams at once (the stream pool's interface)."""

    def open(self) -> int: ...

    def push(self, frames: dict[int, torch.Tensor]) -> dict[int, Prediction | None]: ...

    def reset(self, sid: int) -> None: ...

    def close(self, sid: int) -> None: ...


class StepLog:
    """The video frame (index, pts) each recent model step took, to stamp outputs with the frames they
    refer to even when frames were dropped (bounded: the last ``keep`` steps)."""

    def __init__(self, keep: int) -> None:
        self.entries: deque[tuple[int, float | None]] = deque(maxlen=keep)
        self.steps = 0

    def append(self, frame: SourceFrame) -> None:
        self.entries.append((frame.index, frame.pts))
        self.steps += 1

    def __getitem__(self, step: int) -> tuple[int, float | None]:
        return self.entries[step - (self.steps - len(self.entries))]

    def clear(self) -> None:
        self.entries.clear()
        self.steps = 0


def stamp(out: Prediction, log: StepLog) -> tuple[FramePrediction, float | None, float | None]:
    """The one place a model output is tied to video frames: the `FramePrediction` (frame just fed, step,
    the video frames of its receptive field and source clip, see `cozoo.continual.timing`) and the pts of
    the frame just fed and of the source clip's centre step. A receptive field reaching back past the log
    starts at the oldest logged frame."""
    frame, pts = log[out.frame_index]
    first = log[max(out.first_frame, log.steps - len(log.entries))][0]
    clip_first, clip_last = log[out.clip_first][0], log[out.clip_last][0]
    centre_pts = log[math.floor(out.centre_frame)][1]
    logits = out.logits[0] if out.logits.ndim == 2 else out.logits
    prediction = FramePrediction(frame, out.frame_index, logits.detach().cpu(), first, clip_first, clip_last)
    return prediction, pts, centre_pts


@dataclass
class SourceRun:
    """What happened on one source (see the summary line of the JSON lines schema)."""

    spec: SourceSpec
    index: int
    sid: int
    log: StepLog
    segment: int = 0
    steps: int = 0
    predictions: int = 0
    reconnects: int = 0
    padded: int = 0
    kept: list[FramePrediction] = field(default_factory=list)  # only when asked (for a plot)
    latest: list[tuple[str, float]] | None = None
    last_input: torch.Tensor | None = None
    last_fed: SourceFrame | None = None
    writer: AnnotatedWriter | None = None
    error: BaseException | None = None


@dataclass
class LiveOptions:
    """``capacity``: buffered frames per source (see `cozoo.inference.pacing`); ``realtime``: pace files by
    their timestamps; ``pad``: repeat a short file's last frame until the first prediction; ``keep``: keep
    every prediction in memory (for plots; a live source grows it without bound)."""

    sampling_rate: int = 1
    target_fps: float | None = None
    top_k: int = 5
    capacity: int = 4
    realtime: bool = False
    pad: bool = False
    keep: bool = False
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    crf: int = 18


Handler = Callable[[SourceRun, FramePrediction, dict[str, Any]], None]


class LiveRunner:
    """Runs `LiveOptions` over ``sources``; ``on_prediction`` sees each prediction and its JSON record,
    ``on_frame`` each frame taken from the buffer (for progress), ``log`` reconnection messages."""

    def __init__(
        self,
        model: nn.Module,
        transform: FrameTransform,
        sources: Sequence[SourceSpec],
        class_names: Sequence[str],
        options: LiveOptions,
        device: torch.device | str = "cpu",
        batcher: StreamBatcher | None = None,
        jsonl: JsonLines | None = None,
        out_paths: Sequence[str] | None = None,
        on_prediction: Handler | None = None,
        on_frame: Callable[[SourceRun, QueuedFrame], None] | None = None,
        log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True),
    ) -> None:
        self.transform = transform
        self.sources = list(sources)
        self.names = list(class_names)
        self.options = options
        self.device = torch.device(device)
        self.batcher = batcher if batcher is not None else StreamPool(model, capacity=len(self.sources))
        self.jsonl = jsonl
        self.out_paths = out_paths
        self.on_prediction = on_prediction
        self.on_frame = on_frame
        self.log = log
        self.delay = int(model.delay)
        self.first_output = int(model.first_output)
        self.buffer = FrameBuffer(len(self.sources), options.capacity,
                                  [s.live or options.realtime for s in self.sources])
        self.runs = [SourceRun(spec, i, self.batcher.open(), StepLog(int(model.receptive_field) + 2))
                     for i, spec in enumerate(self.sources)]
        self.warnings: list[str] = []
        self.interrupted = False
        self.seconds = 0.0
        self._stop = threading.Event()

    def stop(self) -> None:
        """End the run from another thread or a callback: sources stop between frames, outputs are
        finalised as at the end."""
        self._stop.set()
        self.buffer.close()

    def _steps_at(self, frame: SourceFrame) -> int:
        return steps_at_frame(frame.segment_index, self.options.sampling_rate, frame.fps or None,
                              self.options.target_fps)

    def run(self) -> list[SourceRun]:
        """Until every source has ended (or Ctrl-C: ``interrupted``); outputs are finalised either way."""
        start = time.perf_counter()
        for run in self.runs:
            frames = read_source(run.spec, self.options.reconnect, self.log, self._stop, self.warnings)
            start_reader(self.buffer, run.index, frames, self._steps_at, self.out_paths is not None,
                         run.spec.live, self.options.realtime)
        try:
            while (items := self.buffer.take()) is not None:
                if items:
                    self._step(items)
            for run in self.runs:
                run.error = self.buffer.errors[run.index]
                if self.options.pad and run.predictions == 0 and run.last_input is not None:
                    self._pad(run)
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            self._stop.set()
            self.buffer.close()
            self.seconds = time.perf_counter() - start
            self._finish()
        return self.runs

    def _step(self, items: dict[int, QueuedFrame]) -> None:
        inputs: dict[int, tuple[torch.Tensor, int, QueuedFrame]] = {}
        for index, item in items.items():
            run = self.runs[index]
            frame = item.frame
            if frame.segment != run.segment:
                self._reconnected(run, frame)
            if item.steps:
                x = self.transform(frame.image)[0].to(self.device)
                run.last_input, run.last_fed = x, frame
                inputs[run.sid] = (x, item.steps, item)
        by_sid = {run.sid: run for run in self.runs}
        for repeat in range(max((n for _, n, _ in inputs.values()), default=0)):
            batch = {sid: x for sid, (x, n, _) in inputs.items() if n > repeat}
            for sid in batch:
                by_sid[sid].log.append(inputs[sid][2].frame)
                by_sid[sid].steps += 1
            for sid, out in self.batcher.push(batch).items():
                if out is not None:
                    self._predicted(by_sid[sid], out, inputs[sid][2].due)
        for index, item in items.items():
            run = self.runs[index]
            if self.on_frame is not None:
                self.on_frame(run, item)
            if self.out_paths is not None:
                self._draw(run, item.frame)

    def _reconnected(self, run: SourceRun, frame: SourceFrame) -> None:
        run.segment = frame.segment
        run.reconnects += 1
        self.batcher.reset(run.sid)
        run.log.clear()
        run.latest = None  # the overlay says "warming up" again until the new connection's first output
        if self.jsonl is not None:
            self.jsonl.write({"type": "reconnect", "source": run.spec.text, "source_index": run.index,
                              "segment": frame.segment, "frame": frame.index})

    def _predicted(self, run: SourceRun, out: Prediction, due: float | None, padded: int = 0) -> None:
        prediction, pts, centre_pts = stamp(out, run.log)
        run.predictions += 1
        if self.options.keep:
            run.kept.append(prediction)
        top = prediction.probs.topk(min(self.options.top_k, len(self.names)))
        run.latest = [(self.names[i], p) for p, i in zip(top.values.tolist(), top.indices.tolist(),
                                                          strict=True)]
        record = {"type": "prediction", "source": run.spec.text, "source_index": run.index,
                  "segment": run.segment, "step": prediction.step, "frame": prediction.frame_index,
                  "first_frame": prediction.first_frame, "clip_first": prediction.clip_first,
                  "clip_last": prediction.clip_last, "centre_frame": prediction.centre_frame, "pts": pts,
                  "centre_pts": centre_pts,
                  "lag": None if due is None else round(max(time.monotonic() - due, 0.0), 4),
                  "top": [{"label": name, "index": int(i), "prob": round(float(p), 6)}
                          for (name, p), i in zip(run.latest, top.indices.tolist(), strict=True)]}
        if padded:
            record["padded"] = padded
        if self.jsonl is not None:
            self.jsonl.write(record)
        if self.on_prediction is not None:
            self.on_prediction(run, prediction, record)

    def _draw(self, run: SourceRun, frame: SourceFrame) -> None:
        if run.writer is None:
            run.writer = AnnotatedWriter(self.out_paths[run.index], frame.fps,  # type: ignore[index]
                                         self.options.crf)
        image = draw_overlay(frame.image.numpy(), run.latest, self.options.top_k)
        run.writer.write(np.asarray(image), frame.pts)

    def _pad(self, run: SourceRun) -> None:
        """Repeat the last fed frame until the first output (a file shorter than the warm-up)."""
        assert run.last_fed is not None and run.last_input is not None
        for _ in range(self.first_output + 1):
            run.padded += 1
            run.log.append(run.last_fed)
            run.steps += 1
            out = self.batcher.push({run.sid: run.last_input})[run.sid]
            if out is not None:
                self._predicted(run, out, None, padded=run.padded)
                return

    def _finish(self) -> None:
        for run in self.runs:
            if run.writer is not None:
                run.writer.close()
            self.batcher.close(run.sid)
            if self.jsonl is not None:
                counts = self.buffer.counts[run.index]
                error = run.error or self.buffer.errors[run.index]
                self.jsonl.write({
                    "type": "summary", "source": run.spec.text, "source_index": run.index,
                    "frames": counts.decoded, "steps": run.steps, "predictions": run.predictions,
                    "skipped": counts.skipped, "dropped": counts.dropped,
                    "dropped_steps": counts.dropped_steps,
                    "reconnects": run.reconnects, "seconds": round(self.seconds, 4),
                    "interrupted": self.interrupted, "error": None if error is None else str(error)})
        if self.jsonl is not None:
            self.jsonl.close()
