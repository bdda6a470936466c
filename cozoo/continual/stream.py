"""A user-facing stream over a continual model: push frames, get predictions tagged with their frame."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cozoo.continual.base import ContinualModule, check_warmup
from cozoo.continual.graph import CudaGraphStepper
from cozoo.continual.timing import FrameStamp, Timing, timing


@dataclass(frozen=True)
class Prediction:
    """Model output for one step, stamped with the input frames it stands for (see `cozoo.continual.timing`).

    ``frame_index``: the 0-based index of the frame just pushed (= ``last_frame``); ``first_frame``: the
    first frame of its receptive field; ``clip_first .. clip_last``: its source clip, the frames whose pooled
    source positions it averages; ``centre_frame``: that clip's middle (a float: x.5 for even lengths).
    """

    logits: torch.Tensor
    frame_index: int
    first_frame: int
    clip_first: int
    clip_last: int

    @property
    def last_frame(self) -> int:
        return self.frame_index

    @property
    def centre_frame(self) -> float:
        return (self.clip_first + self.clip_last) / 2

    @property
    def stamp(self) -> FrameStamp:
        return FrameStamp(self.first_frame, self.frame_index, self.clip_first, self.clip_last)


class Stream:
    """Feeds frames (N, C, H, W) to a continual model, N parallel streams at once.

    Warm-up is hidden: `push` returns ``None`` until the model's first output, and on the steps a
    temporal stride skips. Creating a stream resets the model. ``cuda_graphs=True`` (a model on a CUDA
    device) replays the steady-state step as CUDA graphs (`CudaGraphStepper`): same outputs, far less
    launch overhead per frame. ``warmup="padded"`` starts from the source's zero padding: predictions from
    step ``delay`` on instead of ``first_output`` (see `ContinualModule.reset`).
    """

    def __init__(self, model: nn.Module, cuda_graphs: bool = False, warmup: str = "valid") -> None:
        check_warmup(warmup)
        if not isinstance(model, ContinualModule):
            raise TypeError(f"{type(model).__name__} is not continual; convert it with to_continual()")
        if model.training:
            raise ValueError(
                "model is in training mode: call model.eval() before streaming "
                "(BatchNorm would normalise each frame with its own statistics and update its running ones)"
            )
        param = next(model.parameters(), None)
        if cuda_graphs and (param is None or not param.is_cuda):
            raise ValueError("cuda_graphs=True needs the model on a CUDA device (model.cuda()); CPU steps "
                             "run eagerly")
        self.model = model
        self.cuda_graphs = cuda_graphs
        self.warmup = warmup
        self._stepper: CudaGraphStepper | None = None
        self.reset()

    @property
    def warm(self) -> bool:
        """Whether the model has produced its first output."""
        return self.frames_seen > self.first_output

    @torch.no_grad()
    def push(self, frame: torch.Tensor) -> Prediction | None:
        if self.model.training:
            raise ValueError("model was switched to training mode mid-stream: call model.eval() to stream")
        if not self.model.in_stream:  # first frame, or the model was reset (e.g. a new pool window)
            self.reset()  # reads the schedule as it is now
        if self.cuda_graphs:
            if self._stepper is None:
                self._stepper = CudaGraphStepper(self.model, frame, warmup=self.warmup)
            out = self._stepper.step(frame)
            out = None if out is None else out.clone()  # the graphs' output buffer is overwritten later
        else:
            out = self.model.forward_step(frame)
        index = self.frames_seen
        self.frames_seen += 1
        if out is None:
            return None
        stamp = self.timing.stamp(index)
        return Prediction(out, index, stamp.first_frame, stamp.clip_first, stamp.clip_last)

    def reset(self) -> None:
        """Start a new stream. The model's schedule is read here, once: a container derives it by walking
        all its layers, which is too slow to repeat on every frame."""
        self.model.reset(warmup=self.warmup)
        self._stepper = None
        self.frames_seen = 0
        self.timing: Timing = timing(self.model)
        self.delay: int = self.model.delay
        self.first_output: int = self.model.first_output


ContinualModule.stream_class = Stream
