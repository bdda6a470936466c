"""The continual-module protocol: one set of parameters, three call modes.

* ``forward(clip)``: clip (batch) mode on (N, C, T, H, W).
* ``forward_step(frame)``: one frame (N, C, H, W) -> one output frame, or ``None`` during warm-up and on
  the steps a temporal stride skips.
* ``forward_steps(frames)``: a run of frames (N, C, T, H, W) stepped one by one; outputs stacked on dim 2.

Temporal bookkeeping, all in frames of the module's own input:

* ``receptive_field``: input frames that one output depends on.
* ``stride``: an output every ``stride`` input frames (in steady state).
* ``temporal_padding``: zero padding the *source* (regular) layer applied at the start of the clip.
* ``delay = receptive_field - temporal_padding - 1``: continual-inference's delay, the step of the first
  output when the stream starts from the source's temporal zero padding (``warmup="padded"``); the output
  at step ``t`` pools the source positions of input frames ``t - delay`` onwards (see `timing`).
* ``first_output``: index of the first step that yields an output (so ``first_output`` warm-up steps); it
  depends on the warm-up mode (``delay`` with ``warmup="padded"``).

Two warm-up modes, chosen per stream by ``reset(warmup=...)``: ``"valid"`` (default) emits only outputs
whose receptive field holds real frames; ``"padded"`` starts the state as the zero padding the source
network sees at the start of a clip, so outputs begin at step ``delay`` (as in Co3D and continual-inference)
and equal the source network's first outputs. From the valid mode's ``first_output`` on the two are equal.

Clip mode computes exactly what stepping computes: temporal zero padding is dropped, and so are the
source outputs that would have touched it (the Co3D "model shift"). `set_source_padding(True)`
restores the source network's clip-mode behaviour, for weight-transfer checks.

Step mode is written for CUDA-graph capture: state lives in buffers allocated at the first step after
`reset()` (by `new_state`, filled with the module's `initial_state_value`) and then updated in place;
which modules run at a step depends only on the step count, never on data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn


class StreamError(ValueError):
    """A frame does not fit the stream (rank, shape, dtype or device), or the stream changed mid-way."""


@dataclass(frozen=True)
class Schedule:
    """When a stream's elements are emitted, in frames of the *model input*.

    ``first``: step of the first emission; ``stride``: steps between emissions; ``skip``: source elements
    dropped before the first emitted one (they depended on temporal padding); ``receptive_field`` and
    ``padding``: input frames one element spans, and the source's aggregated temporal padding; ``span``:
    input frames whose source positions one element stands for (its stride, or a global pool's window);
    ``padded``: the stream starts from the source's zero padding (``warmup="padded"``; then ``skip`` is 0).
    """

    first: int = 0
    stride: int = 1
    skip: int = 0
    receptive_field: int = 1
    padding: int = 0
    span: int = 1
    padded: bool = False

    @property
    def delay(self) -> int:
        return self.receptive_field - self.padding - 1


class ContinualModule:
    """Mixin for continual modules; combine with ``nn.Module`` (or a subclass of it).

    Leaf layers define their own (local) temporal properties; containers derive theirs by propagating
    a `Schedule` through their children (`_schedule`).
    """

    #: Whether the input is a list of pathway streams rather than one stream.
    takes_pathways: bool = False

    #: Rank of one input frame (4 for (N, C, H, W); 2 for features (N, F)); None accepts any.
    frame_rank: int | None = 4

    # -- temporal schedule (stateless defaults) -------------------------------------------------------
    @property
    def receptive_field(self) -> int:
        return 1

    @property
    def stride(self) -> int:
        return 1

    @property
    def temporal_padding(self) -> int:
        return 0

    @property
    def first_output(self) -> int:
        return 0

    @property
    def delay(self) -> int:
        return self.receptive_field - self.temporal_padding - 1

    @property
    def expected_channels(self) -> int | None:
        """Channel count a frame must have, where the module knows it."""
        return None

    @property
    def pooled_elements(self) -> int:
        """Input elements whose source positions one output element stands for (see `Schedule.span`)."""
        return self.stride

    #: Whether the output carries information from every earlier frame (a recurrent state).
    recurrent: bool = False

    @property
    def warmup(self) -> str:
        """The stream's warm-up mode, ``"valid"`` or ``"padded"`` (set by `reset`)."""
        return self.__dict__.get("_warmup", "valid")

    def _padded_first(self) -> int:
        """Warm-up hook: the input element at which the first output is emitted when the stream starts from
        the source's zero padding (``temporal_padding`` zero elements stand in front of the first frame)."""
        first = self.receptive_field - 1 - self.temporal_padding
        if first < 0:
            raise ValueError(
                f"{type(self).__name__}: temporal padding {self.temporal_padding} exceeds its receptive "
                f"field less one ({self.receptive_field - 1}); its first source outputs see padding only, so "
                "it has no padded warm-up"
            )
        return first

    def _local_first(self, skip: int) -> tuple[int, int]:
        """(first output step, source outputs dropped) for an input that lost its first ``skip`` source
        elements. Strided layers use ``skip`` to keep the source network's sampling phase."""
        return 0, skip

    def _bind(self, inp: Schedule) -> None:
        """Remember what this leaf needs of its input schedule (strided layers: the input's skip)."""

    def _schedule(self, inp: Schedule, bind: bool) -> Schedule:
        """The output schedule for input schedule ``inp``; ``bind`` stores what stepping needs."""
        first, skip = (self._padded_first(), 0) if inp.padded else self._local_first(inp.skip)
        if bind:
            self._bind(inp)
        return Schedule(
            first=inp.first + first * inp.stride,
            stride=inp.stride * self.stride,
            skip=skip,
            receptive_field=inp.receptive_field + (self.receptive_field - 1) * inp.stride,
            padding=inp.padding + self.temporal_padding * inp.stride,
            span=inp.span + (self.pooled_elements - 1) * inp.stride,
            padded=inp.padded,
        )

    def bind_schedule(self) -> Schedule:
        """Align every strided layer and merge in this module as the top of a stream; returns its schedule.

        Both warm-up modes are bound (merges keep one alignment per mode); a module that cannot start
        from padding records why, and `reset` raises it for ``warmup="padded"``. The top also records
        how many frames a clip needs for one output (see `_check_clip`); binding a container makes it
        the top, so nested containers forget theirs."""
        assert isinstance(self, nn.Module)
        try:
            self._schedule(Schedule(padded=True), bind=True)
            self.__dict__.pop("_no_padded_warmup", None)
        except ValueError as error:
            self.__dict__["_no_padded_warmup"] = str(error)
        schedule = self._schedule(Schedule(), bind=True)
        for module in self.modules():
            module.__dict__.pop("_clip_frames_needed", None)
        if isinstance(schedule, Schedule):
            self.__dict__["_clip_frames_needed"] = schedule.first + 1
        return schedule

    def _check_clip(self, clip: torch.Tensor) -> None:
        """Raise if ``clip`` (N, C, T, ...) is too short for one clip-mode output of this (top) module.

        Continual models drop the source's temporal zero padding, so a clip needs ``first_output + 1``
        frames (the receptive field without padding) where the source network accepted fewer."""
        needed = self.__dict__.get("_clip_frames_needed")
        if needed is None or not isinstance(clip, torch.Tensor):
            return
        self._check_clip_rank(clip, "expected a clip")
        if clip.shape[2] < needed and not self.source_padding:
            raise ValueError(
                f"a clip of {clip.shape[2]} frames is too short: in clip mode this continual model's first "
                f"output needs {needed} frames (it drops the source network's temporal zero padding, as in "
                f"step mode). Pass at least {needed} frames, or call set_source_padding(True) to run clips "
                "with the source's padding"
            )

    # -- step mode -------------------------------------------------------------------------------------
    def _step(self, frame: torch.Tensor) -> torch.Tensor | None:
        """One step without input checks; containers call this on their children."""
        raise NotImplementedError

    def _reset_state(self) -> None:
        """Drop this module's own state (children are reset by `reset`)."""

    def initial_state_value(self) -> float:
        """The value every element of this module's state holds when a stream starts (what the source pads
        with: zeros; a max pool ignores its padding, which -inf stands for). State is allocated at the
        module's first step, filled with this value by `new_state`; a `StreamPool` fills the rows of a
        stream it opens or resets with it (an LSTM's (h, c) start at torch's default zeros)."""
        return 0.0

    def new_state(self, like: torch.Tensor, *shape: int) -> torch.Tensor:
        """A state buffer of ``shape`` on ``like``'s dtype and device, as a stream starts it
        (`initial_state_value`): every stateful module allocates through here."""
        return like.new_full(shape, self.initial_state_value())

    # -- explicit state (export) -----------------------------------------------------------------------
    # Steps keep their state inside the modules; an exported step takes and returns it instead. These two
    # methods expose a module's own state tensors by name, batch dimension first, zeros at a new stream.
    # Default: the ``_state`` buffer of convolutions and pools. Step counters stay Python ints.
    def stream_state(self) -> dict[str, torch.Tensor]:
        """This module's own state tensors by name, as its steps left them (none before its first step)."""
        state = self.__dict__.get("_state")
        return {"cache": state} if isinstance(state, torch.Tensor) else {}

    def load_stream_state(self, state: dict[str, torch.Tensor]) -> None:
        """Step on from ``state`` (the names and shapes `stream_state` gives; used as is, not copied)."""
        check_state_names(self, state, self.stream_state())
        if state:
            self._state = state["cache"]

    def forward_step(self, frame: torch.Tensor) -> torch.Tensor | None:
        """Feed one frame; returns an output frame or ``None`` (warm-up or a skipped strided step).

        With gradients enabled, autograd records every step through the model's state, as through an
        RNN's (memory grows with the stream): run inference under ``torch.no_grad()``, or use `stream`.
        A step that raises resets the model (its state would be half-updated), keeping its warm-up mode."""
        self._check_frame(frame)
        try:
            return self._step(frame)
        except BaseException:
            self.reset(warmup=self.warmup)
            raise

    def forward_steps(self, frames: torch.Tensor, warmup: str | None = None) -> torch.Tensor | None:
        """Feed ``frames`` (N, C, T, ...) one by one; returns the outputs stacked on dim 2, or ``None``.

        ``warmup`` (``"valid"`` or ``"padded"``, see `reset`) starts a new stream first; ``None`` continues
        the current one."""
        if not isinstance(frames, torch.Tensor) or frames.dim() < 3:
            raise StreamError(f"forward_steps expects a tensor (N, C, T, ...), got {_describe(frames)}")
        self._check_clip_rank(frames, "forward_steps expects frames")
        if warmup is not None:
            self.reset(warmup=warmup)
        outputs = []
        for t in range(frames.shape[2]):
            out = self.forward_step(frames[:, :, t])
            if out is not None:
                outputs.append(out)
        return torch.stack(outputs, dim=2) if outputs else None

    #: The class `stream` builds; `cozoo.continual.stream` sets it to its `Stream` (it sits above this
    #: module, which therefore cannot name it), and importing `cozoo.continual` always imports that module.
    stream_class: type | None = None

    def stream(
        self, cuda_graphs: bool = False, features: bool = False, warmup: str = "valid"
    ):  # -> cozoo.continual.stream.Stream
        """A `Stream` over this model (resets it): ``stream.push(frame)`` returns a `Prediction` or None.
        ``cuda_graphs``: replay steps as CUDA graphs (a model on a CUDA device); ``features``: predictions
        carry each step's pooled features instead of logits; ``warmup``: see `reset`."""
        assert ContinualModule.stream_class is not None, "cozoo.continual.stream registers Stream on import"
        return ContinualModule.stream_class(self, cuda_graphs=cuda_graphs, features=features, warmup=warmup)

    def reset(self, warmup: str = "valid") -> None:
        """Forget the stream: drop all state in this module and its children, and start the next one in
        warm-up mode ``warmup``: ``"valid"`` emits only outputs whose receptive field holds real frames
        (from step ``first_output``); ``"padded"`` starts every layer's state as the source network's
        temporal zero padding, so outputs begin at step ``delay`` (Co3D's and continual-inference's
        transient outputs), equal to the valid mode's from its ``first_output`` on."""
        check_warmup(warmup)
        assert isinstance(self, nn.Module)
        if warmup == "padded" and "_no_padded_warmup" in self.__dict__:
            raise ValueError(self.__dict__["_no_padded_warmup"])
        for module in self.modules():
            if isinstance(module, ContinualModule):
                module._reset_state()
                module.__dict__.pop("_stream_signature", None)
                module.__dict__["_warmup"] = warmup

    @property
    def in_stream(self) -> bool:
        """Whether frames were stepped through this module since its last `reset`."""
        return "_stream_signature" in self.__dict__

    def set_source_padding(self, enabled: bool = True) -> None:
        """Clip mode reproduces the source network (with its temporal padding) when ``enabled``."""
        assert isinstance(self, nn.Module)
        for module in self.modules():
            if isinstance(module, ContinualModule):
                module.__dict__["_source_padding"] = enabled

    @property
    def source_padding(self) -> bool:
        return self.__dict__.get("_source_padding", False)

    # -- input validation (top-level calls only) -------------------------------------------------------
    def _check_clip_rank(self, clip: torch.Tensor, what: str) -> None:
        """Frames stacked on dim 2 have one dimension more than a frame."""
        if self.frame_rank is not None and clip.dim() != self.frame_rank + 1:
            layout = "(N, C, T, H, W)" if self.frame_rank == 4 else f"a rank-{self.frame_rank + 1} tensor"
            hint = "; use forward_step(frame) for one frame" if clip.dim() == self.frame_rank else ""
            raise StreamError(f"{what} {layout}, got shape {tuple(clip.shape)}{hint}")

    def _check_frame(self, frame: torch.Tensor) -> None:
        if not isinstance(frame, torch.Tensor):
            raise StreamError(f"forward_step expects a tensor frame, got {_describe(frame)}")
        if self.frame_rank is not None and frame.dim() != self.frame_rank:
            layout = "(N, C, H, W)" if self.frame_rank == 4 else f"a rank-{self.frame_rank} tensor"
            is_clip = frame.dim() == self.frame_rank + 1
            hint = " (pass a clip to forward() or forward_steps())" if is_clip else ""
            raise StreamError(f"expected one frame {layout}, got shape {tuple(frame.shape)}{hint}")
        if not frame.is_floating_point():
            raise StreamError(f"frames must be floating point, got dtype {frame.dtype}")
        channels = self.expected_channels
        if channels is not None and frame.shape[1] != channels:
            raise StreamError(f"expected {channels} channels, got a frame of shape {tuple(frame.shape)}")
        param = next(self.parameters(), None) if isinstance(self, nn.Module) else None
        if param is not None and (frame.dtype != param.dtype or frame.device != param.device):
            raise StreamError(
                f"frame is {frame.dtype} on {frame.device} but the model is {param.dtype} on {param.device}"
            )
        signature = self.__dict__.get("_stream_signature")
        if signature is None:
            self.__dict__["_stream_signature"] = (tuple(frame.shape), frame.dtype, frame.device)
            if torch.is_grad_enabled() and param is not None and param.requires_grad and not self.training:
                warnings.warn(
                    "stepping an eval-mode model with gradients enabled: autograd keeps every step's graph "
                    "through the model's state, so memory grows with the stream; wrap inference in "
                    "torch.no_grad() (model.stream() does)", stacklevel=3,
                )
            return
        shape, dtype, device = signature
        if tuple(frame.shape) != shape:
            what = "batch size" if frame.shape[0] != shape[0] else (
                "channel count" if frame.shape[1] != shape[1] else "frame size")
            raise StreamError(
                f"{what} changed mid-stream: frames so far were {shape}, this one is {tuple(frame.shape)}; "
                "call reset() to start a new stream"
            )
        if (frame.dtype, frame.device) != (dtype, device):
            raise StreamError(
                f"dtype/device changed mid-stream from {dtype} on {device} "
                f"to {frame.dtype} on {frame.device}; "
                "call reset() to start a new stream"
            )


class WindowedLayer(ContinualModule):
    """A leaf whose output frame is computed from a window of ``receptive_field`` input frames, taken
    every ``stride_t`` frames from a source padded by ``padding_t`` (convolutions, pools).

    ``input_skip`` (bound by the schedule pass) is how many leading source elements the input lost;
    it fixes where the first padding-free window starts, so the source's sampling phase is kept.
    """

    stride_t: int
    padding_t: int
    input_skip: int = 0
    _steps: int  # input steps counted by `_tick` since the last reset

    @property
    def stride(self) -> int:
        return self.stride_t

    @property
    def temporal_padding(self) -> int:
        return self.padding_t

    @property
    def phase_offset(self) -> int:
        """Input frame at which the first padding-free source window starts."""
        return first_window(self.input_skip, self.padding_t, self.stride_t)[0]

    @property
    def first_output(self) -> int:
        if self.warmup == "padded":
            return self._padded_first()
        return self.phase_offset + self.receptive_field - 1

    def _local_first(self, skip: int) -> tuple[int, int]:
        offset, dropped = first_window(skip, self.padding_t, self.stride_t)
        return offset + self.receptive_field - 1, dropped

    def _bind(self, inp: Schedule) -> None:
        if not inp.padded:  # a padded stream keeps the source's own phase: no skip to remember
            self.input_skip = inp.skip

    def _tick(self) -> bool:
        """Count one input step (``self._steps``, periodic once past the first output); whether the
        step counted yields an output."""
        step = self._steps
        self._steps = advance(step, self.first_output, self.stride_t)
        return emits(step, self.first_output, self.stride_t)


WARMUP_MODES = ("valid", "padded")


def check_warmup(warmup: object) -> None:
    """Refuse a warm-up mode other than ``"valid"`` or ``"padded"``."""
    if warmup not in WARMUP_MODES:
        raise ValueError(f"warmup must be 'valid' or 'padded', got {warmup!r}")


def check_state_names(module: object, given: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> None:
    """Refuse state tensors that are not exactly the ones ``module`` holds."""
    if set(given) != set(own):
        raise KeyError(f"{type(module).__name__} holds state {sorted(own)}, got {sorted(given)}")


def _describe(value: object) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__


def emits(step: int, first_output: int, stride: int) -> bool:
    """Whether a module with this schedule yields an output at 0-based input ``step``."""
    return step >= first_output and (step - first_output) % stride == 0


def advance(step: int, first_output: int, stride: int) -> int:
    """The step counter after ``step``: once past the first output it cycles through one stride period
    (emission depends only on the phase), so a module's Python state is periodic in steady state."""
    step += 1
    return step - stride if step >= first_output + stride else step


def first_window(skip: int, padding: int, stride: int) -> tuple[int, int]:
    """For a layer whose input lost its first ``skip`` source elements: the input index where the
    first padding-free source window starts, and the source index of that output (= outputs dropped)."""
    first_source_output = -(-(skip + padding) // stride)
    return first_source_output * stride - padding - skip, first_source_output


def pad_to_length(x: torch.Tensor, length: int) -> tuple[torch.Tensor, bool]:
    """Zero-extend dim 2 of a clip to at least ``length`` frames; the flag says whether it was too short
    (then the caller keeps zero outputs, as stepping such a clip yields none)."""
    missing = length - x.shape[2]
    if missing <= 0:
        return x, False
    return torch.cat([x, x.new_zeros(*x.shape[:2], missing, *x.shape[3:])], dim=2), True


def replaces_state() -> bool:
    """Whether steps replace their state tensors instead of updating them in place: with autograd on (the
    backward pass needs the old values) and while `torch.export` traces a step (an exported step is a pure
    function of its inputs, its state among them; see `cozoo.export`)."""
    return torch.is_grad_enabled() or torch.compiler.is_exporting()


def shift_in(buffer: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """Drop the oldest entry on dim 2 of ``buffer`` and append ``frame`` as the newest; returns the buffer.

    In place (the returned tensor is ``buffer``) except where `replaces_state`: then a new tensor, as an
    in-place update would overwrite tensors that layers saved for the backward pass (e.g. a conv's input
    window, saved for its weight's gradient), or the input of an exported step. In place it costs two
    kernels (one for a single-entry buffer): the shifted window is built by one concatenation and copied
    back, as a batch-1 step's cost on a GPU is mostly its kernel count. Except on a CPU for caches of frame
    maps (N, C, K, H, W): one copy per entry there, as concatenating strided slices of large maps is 2-4x
    slower (long buffers of small entries, like a global pool's, keep the concatenation).
    """
    if replaces_state():
        return torch.cat((buffer[:, :, 1:], frame.unsqueeze(2)), dim=2)
    if buffer.shape[2] == 1:
        buffer[:, :, 0] = frame
    elif buffer.is_cuda or buffer.dim() != 5:
        buffer.copy_(torch.cat((buffer[:, :, 1:], frame.unsqueeze(2)), dim=2))
    else:
        for i in range(buffer.shape[2] - 1):
            buffer[:, :, i] = buffer[:, :, i + 1]
        buffer[:, :, -1] = frame
    return buffer
