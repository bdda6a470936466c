"""Run an exported step (``cozoo export``) with onnxruntime: `OnnxStepper` steps frames, `OnnxVideoStreamer`
streams a video file giving what ``cozoo stream`` gives (same frames fed, same predictions and stamps).
Needs only onnxruntime, numpy and PyAV (no PyTorch)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cozoo.runtime.metadata import (
    FRAME_NAME,
    LOGITS_NAME,
    VALID_NAME,
    check_signature,
    metadata_path,
    read_metadata,
)
from cozoo.runtime.preprocess import FramePreprocessor, iter_rgb_frames, probe
from cozoo.timeline import StepTimeline


class OnnxStepper:
    """Steps frames ``(N, 3, crop, crop)`` float32 through an exported model, N streams at once; `step`
    returns the logits where the PyTorch step returns a prediction, else None. ``threads``: onnxruntime's
    intra-op threads (0: its default)."""

    def __init__(self, onnx_path: str | os.PathLike, threads: int = 0,
                 providers: list[str] | None = None) -> None:
        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {os.fspath(onnx_path)!r}")
        self.metadata: dict[str, Any] = read_metadata(metadata_path(self.onnx_path))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.fspath(self.onnx_path), options,
                                            providers=providers or ["CPUExecutionProvider"])
        check_signature(self.metadata, self.session.get_inputs(), self.session.get_outputs(),
                        os.fspath(self.onnx_path))
        self._outputs = [o.name for o in self.session.get_outputs()]
        frame = self.metadata["inputs"][0]
        self.frame_shape: list[int | None] = list(frame["shape"])
        self.reset()

    def reset(self) -> None:
        """Start new streams: the state is set to its initial values at the next step (batch size of the
        next frame)."""
        self.state: dict[str, np.ndarray] = {}
        self.steps = 0
        self._batch: int | None = None

    def _initial_state(self, batch: int) -> dict[str, np.ndarray]:
        return {s["name"]: np.full([batch if d is None else d for d in s["shape"]], s["initial"],
                                   dtype=s["dtype"]) for s in self.metadata["state"]}

    def _check_frame(self, frame: Any) -> None:
        expected = self.frame_shape
        if not isinstance(frame, np.ndarray):
            raise TypeError(f"a frame must be a numpy array (N, 3, H, W) float32, got {type(frame).__name__}")
        if frame.dtype != np.float32:
            raise TypeError(f"frames must be float32 (normalised as the metadata says), got {frame.dtype}")
        fits = frame.ndim == len(expected) and all(e is None or e == g for e, g in zip(expected, frame.shape,
                                                                                        strict=True))
        if not fits:
            shape = tuple("N" if e is None else e for e in expected)
            raise ValueError(f"expected a frame of shape {shape}, got {frame.shape}")
        if self._batch is not None and frame.shape[0] != self._batch:
            raise ValueError(f"batch size changed mid-stream from {self._batch} to {frame.shape[0]}: call "
                             "reset() to start new streams")

    def step(self, frame: np.ndarray) -> np.ndarray | None:
        """Feed one frame per stream; the logits ``(N, ...)`` when the model makes a prediction, else None."""
        self._check_frame(frame)
        if self._batch is None:
            self._batch = frame.shape[0]
            self.state = self._initial_state(self._batch)
        results = dict(zip(self._outputs, self.session.run(None, {FRAME_NAME: frame, **self.state}),
                           strict=True))
        self.state = {s["name"]: results[s["output"]] for s in self.metadata["state"]}
        self.steps += 1
        return results[LOGITS_NAME] if bool(results[VALID_NAME]) else None


@dataclass(frozen=True)
class FramePrediction:
    """As `cozoo.inference.video.FramePrediction`: the output after video frame ``frame_index`` (model step
    ``step``) for the source clip of video frames ``clip_first .. clip_last`` (the metadata's warm-up rule),
    centred on ``centre_frame``; ``logits`` of the one stream, numpy."""

    frame_index: int
    step: int
    logits: np.ndarray
    clip_first: int
    clip_last: int

    @property
    def centre_frame(self) -> float:
        return (self.clip_first + self.clip_last) / 2

    @property
    def probs(self) -> np.ndarray:
        shifted = np.exp(self.logits - self.logits.max())
        return shifted / shifted.sum()


class OnnxVideoStreamer(StepTimeline):
    """Feeds decoded video frames to an exported model as ``cozoo stream`` does: every ``sampling_rate``-th
    frame (on a ``target_fps`` timeline when the metadata sets one and the video's rate differs by at
    least 0.001 fps), each preprocessed on its own."""

    def __init__(self, onnx_path: str | os.PathLike, threads: int = 0) -> None:
        self.stepper = OnnxStepper(onnx_path, threads=threads)
        meta = self.stepper.metadata
        pre = meta["preprocessing"]
        self.transform = FramePreprocessor(pre["crop"], pre["short_side"], pre["mean"], pre["std"])
        self.sampling_rate: int = meta["sampling_rate"]
        self.target_fps: float | None = meta.get("target_fps")
        self.delay: int = meta["schedule"]["delay"]
        self.source_clip: int = meta["schedule"].get("source_clip", 1)  # absent before format 1's stamps
        self.recurrent: bool = meta["schedule"].get("recurrent", False)
        self.first_output: int = meta["schedule"]["first_output"]
        self.labels: list[str] = meta["labels"]
        self.fps: float | None = None
        self.reset()

    def reset(self) -> None:
        self.stepper.reset()
        self.frames_read = self.steps = self.padded = 0
        self._last_input: np.ndarray | None = None

    def _push(self, x: np.ndarray, frame_index: int) -> FramePrediction | None:
        step = self.steps
        logits = self.stepper.step(x)
        self.steps += 1
        if logits is None:
            return None
        first = 0 if self.recurrent else step - self.delay
        last = step if self.recurrent else first + self.source_clip - 1
        # steps padded past the video's end stop at its last frame
        clip_first, clip_last = (min(self.video_frame(s), frame_index) for s in (first, last))
        return FramePrediction(frame_index, step, logits[0], clip_first, clip_last)

    def feed(self, frames: Iterable[np.ndarray], fps: float | None = None) -> Iterator[FramePrediction]:
        """Push decoded ``(H, W, 3)`` uint8 frames of a video at ``fps``; yield each prediction."""
        self.fps = fps
        for frame in frames:
            index = self.frames_read
            self.frames_read += 1
            repeats = self._steps_at(index)
            if not repeats:
                continue
            self._last_input = self.transform(frame)
            for _ in range(repeats):
                prediction = self._push(self._last_input, index)
                if prediction is not None:
                    yield prediction

    def pad_until_output(self) -> FramePrediction | None:
        """Repeat the last fed frame until the first prediction (``cozoo stream --pad``)."""
        if self._last_input is None:
            raise ValueError("no frame was fed")
        while self.steps <= self.first_output:
            self.padded += 1
            prediction = self._push(self._last_input, self.frames_read - 1)
            if prediction is not None:
                return prediction
        return None

    def stream_video(self, path: str | os.PathLike) -> Iterator[FramePrediction]:
        """Decode ``path`` frame by frame (after a reset), yielding predictions as they come."""
        info = probe(path)
        self.reset()
        yield from self.feed(iter_rgb_frames(path), fps=info.fps)
        if self.frames_read == 0:
            raise ValueError(f"cannot decode video {os.fspath(path)!r}: no frame could be decoded")
