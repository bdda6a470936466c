"""Step mode as CUDA graphs: a whole network's step replayed with one launch.

A continual model's step does the same work on every step in steady state, except for the phase of its
temporal strides: with overall stride P, steps t and t + P run the same kernels on the same buffers (state
lives in buffers allocated once and updated in place; no data-dependent branching). `CudaGraphStepper`
therefore steps the model eagerly until it is in steady state, then captures P graphs, one per phase,
and replays them cyclically.

With ``compile=True`` the step is first compiled with ``torch.compile(fullgraph=True)`` (TorchInductor), which
fuses the pointwise work around the convolutions (BatchNorm, activations, residual adds, state copies) into
fewer kernels; at batch 1 a step's time on a GPU is mostly its kernel count. Compiling costs tens of seconds
on the first steps of each new frame shape.
"""

from __future__ import annotations

import torch
from torch import nn

from cozoo.continual.base import ContinualModule, StreamError


class CudaGraphStepper:
    """Wraps a continual model on CUDA; ``step(frame)`` has the semantics of ``model.forward_step``.

    The returned tensor is a static output buffer: it is overwritten at the next step of the same phase
    (clone it to keep it). Creating a stepper resets the model; use one stepper per stream, and do not mix
    in the model's own ``forward_step`` once captured (its step counters stay at the capture's phase).
    ``compile=True`` compiles the step (TorchInductor) before capturing it: fewer, fused kernels.
    ``features=True`` steps ``model.forward_step_features`` (pooled features, no classifier) instead.
    ``warmup``: the stream's warm-up mode (see `ContinualModule.reset`); eager steps run until that mode's
    first output plus one period (the attribute ``warmup`` counts the steps run before capture).
    """

    def __init__(
        self, model: nn.Module, example_frame: torch.Tensor, compile: bool = False, features: bool = False,
        warmup: str = "valid",
    ) -> None:
        if not isinstance(model, ContinualModule):
            raise TypeError(f"{type(model).__name__} is not a continual model")
        if not example_frame.is_cuda:
            raise ValueError("CudaGraphStepper needs a CUDA frame (and model); CPU steps run eagerly")
        model.reset(warmup=warmup)  # the schedule below is the warm-up mode's
        self.model = model
        self.period = model.stride
        # Eager steps until every module has emitted and allocated its state (steady state); with
        # `compile`, one more period of compiled steps compiles every phase before capture.
        self._eager_steps = model.first_output + self.period
        self.warmup = self._eager_steps + (self.period if compile else 0)
        step = model._step_features if features else model._step  # type: ignore[attr-defined]
        self._eager_step = model.forward_step_features if features else model.forward_step  # type: ignore[attr-defined]
        self._step_fn = torch.compile(step, dynamic=False, fullgraph=True) if compile else step
        self._static_in = example_frame.clone()
        self._graphs: list[torch.cuda.CUDAGraph] = []
        self._outputs: list[torch.Tensor | None] = []
        self._steps = 0
        self._phase = 0

    @property
    def captured(self) -> bool:
        return bool(self._graphs)

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> torch.Tensor | None:
        if not self._graphs and self._steps < self.warmup:
            self._steps += 1
            if self._steps <= self._eager_steps:
                return self._eager_step(frame)
            self.model._check_frame(frame)  # type: ignore[attr-defined]
            return self._step_fn(frame)
        if not self._graphs:
            self._capture()
        elif not self.model.in_stream:  # type: ignore[attr-defined]
            raise StreamError(
                "the model was reset after its steps were captured: the graphs would write into freed state "
                "buffers; a new stream needs a new stepper (Stream.reset() makes one)"
            )
        self._check_replay_frame(frame)
        self._static_in.copy_(frame)
        phase = self._phase
        self._graphs[phase].replay()
        self._phase = (phase + 1) % self.period
        self._steps += 1
        return self._outputs[phase]

    def _check_replay_frame(self, frame: torch.Tensor) -> None:
        """The graphs read a fixed input buffer: another shape would be broadcast into it (or fail deep in
        a copy), so it is refused here, by Python attribute checks only (nothing waits on the GPU)."""
        static = self._static_in
        if (not isinstance(frame, torch.Tensor) or frame.shape != static.shape
                or frame.dtype != static.dtype or frame.device != static.device):
            got = (f"{tuple(frame.shape)} {frame.dtype} on {frame.device}"
                   if isinstance(frame, torch.Tensor) else type(frame).__name__)
            raise StreamError(
                f"frame {got} does not match the captured graphs' input {tuple(static.shape)} "
                f"{static.dtype} on {static.device}; a new stream needs a new stepper "
                "(Stream.reset() makes one)"
            )

    def _capture(self) -> None:
        model = self.model
        model._check_frame(self._static_in)  # type: ignore[attr-defined]
        pool = None
        for _ in range(self.period):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                out = self._step_fn(self._static_in)
            pool = graph.pool()
            self._graphs.append(graph)
            self._outputs.append(out)
