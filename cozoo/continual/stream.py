"""A user-facing stream over a continual model: push frames, get predictions tagged with their frame."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from cozoo.continual.base import ContinualModule, check_warmup
from cozoo.continual.graph import CudaGraphStepper
from cozoo.continual.timing import FrameStamp, Stamped, Timing, timing


@dataclass(frozen=True)
class Prediction(Stamped):
    """Model output for one step, stamped with the input frames it stands for (see `cozoo.continual.timing`).

    ``frame_index``: the 0-based index of the frame just pushed (= ``last_frame``); ``first_frame``: the
    first frame of its receptive field; ``clip_first .. clip_last``: its source clip, the frames whose pooled
    source positions it averages; ``centre_frame``: that clip's middle (a float: x.5 for even lengths).
    A features stream (``Stream(model, features=True)``) gives ``features`` (N, F) and no ``logits``.
    """

    logits: torch.Tensor | None
    frame_index: int
    first_frame: int
    clip_first: int
    clip_last: int
    features: torch.Tensor | None = None

    @property
    def stamp(self) -> FrameStamp:
        return FrameStamp(self.first_frame, self.frame_index, self.clip_first, self.clip_last)


def stamp(logits: torch.Tensor | None, frame_index: int, timing: Timing,
          features: torch.Tensor | None = None) -> Prediction:
    """The `Prediction` for frame ``frame_index`` of one stream of a model with this `Timing`; `Stream` and
    `StreamPool` stamp their outputs here, so both carry the same fields."""
    frames = timing.stamp(frame_index)
    return Prediction(logits, frame_index, frames.first_frame, frames.clip_first, frames.clip_last,
                      features=features)


class Stream:
    """Feeds frames (N, C, H, W) to a continual model, N parallel streams at once.

    Warm-up is hidden: `push` returns ``None`` until the model's first output, and on the steps a
    temporal stride skips. Creating a stream resets the model. ``cuda_graphs=True`` (a model on a CUDA
    device) replays the steady-state step as CUDA graphs (`CudaGraphStepper`): same outputs, far less
    launch overhead per frame. ``features=True``: each prediction carries the step's pooled features
    (the classifier's input, ``model.forward_step_features``) instead of logits. ``warmup="padded"`` starts
    from the source's zero padding: predictions from step ``delay`` on instead of ``first_output`` (see
    `ContinualModule.reset`).
    """

    def __init__(
        self, model: nn.Module, cuda_graphs: bool = False, features: bool = False, warmup: str = "valid"
    ) -> None:
        check_warmup(warmup)
        if not isinstance(model, ContinualModule):
            raise TypeError(f"{type(model).__name__} is not continual; convert it with to_continual()")
        if features and not hasattr(model, "forward_step_features"):
            raise TypeError(f"{type(model).__name__} has no forward_step_features: features=True needs a zoo "
                            "model (cozoo.create_model, or to_continual of one)")
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
        self.features = features
        self.warmup = warmup
        self._stepper: CudaGraphStepper | None = None
        self.reset()

    @property
    def warm(self) -> bool:
        """Whether the model has produced its first output."""
        return self.frames_seen > self.first_output

    @torch.inference_mode()
    def push(self, frame: torch.Tensor) -> Prediction | None:
        """Step the model on ``frame`` (N, C, H, W). Runs in inference mode, which also folds each eval-mode
        BatchNorm that follows a conv into it (`cozoo.continual.fastpath`); the model's state then holds
        inference tensors, so `reset` the model before stepping it outside a stream."""
        if self.model.training:
            raise ValueError("model was switched to training mode mid-stream: call model.eval() to stream")
        if not self.model.in_stream:  # first frame, or the model was reset (e.g. a new pool window)
            self.reset()  # reads the schedule as it is now
        if self.cuda_graphs:
            if self._stepper is None:
                self._stepper = CudaGraphStepper(self.model, frame, features=self.features,
                                                 warmup=self.warmup)
            out = self._stepper.step(frame)
            out = None if out is None else out.clone()  # the graphs' output buffer is overwritten later
        elif self.features:
            out = self.model.forward_step_features(frame)  # type: ignore[operator]
        else:
            out = self.model.forward_step(frame)
        index = self.frames_seen
        self.frames_seen += 1
        if out is None:
            return None
        if self.features:
            return stamp(None, index, self.timing, features=out)
        if not self._warned_nonfinite and out.device.type == "cpu" and not bool(torch.isfinite(out).all()):
            # CPU only: on CUDA the check would wait for the step to finish (a sync per prediction)
            self._warned_nonfinite = True
            warnings.warn(f"the prediction at frame {index} is NaN or infinite: a frame pushed within the "
                          "receptive field holds NaN or Inf values (check the decoding and normalisation)",
                          RuntimeWarning, stacklevel=2)
        return stamp(out, index, self.timing)

    def reset(self) -> None:
        """Start a new stream. The model's schedule is read here, once: a container derives it by walking
        all its layers, which is too slow to repeat on every frame."""
        self.model.reset(warmup=self.warmup)
        self._stepper = None
        self.frames_seen = 0
        self.timing: Timing = timing(self.model)
        self._warned_nonfinite = False
        self.delay: int = self.model.delay
        self.first_output: int = self.model.first_output


ContinualModule.stream_class = Stream
