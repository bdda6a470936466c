"""A continual model's step as a pure function of its inputs: ``(frame, step, *state) -> (logits, valid,
next step, *next state)``, for tracing with `torch.export`.

The model keeps its stream state inside its modules (buffers allocated at the first steps, updated in place);
`StateLayout` lists those tensors by name (``state.<module path>.<buffer>``, batch dimension first), and
`PhaseStep` runs one step with them swapped in and reads the new ones back. While `torch.export` traces,
the step replaces its state tensors instead of updating them in place (`cozoo.continual.base.replaces_state`).

Which modules run at a step depends only on the step count: in steady state the step is periodic with the
model's stride P, so P traced steps (one per phase) describe every later step. A stream starts with every
state tensor at zero and ``step`` 0. The steady-state graphs run from the first frame compute outputs that
the eager step holds back during warm-up; those are flagged ``valid = False`` and, as every state a
prediction depends on spans a finite window that the warm-up flushes, never reach a valid prediction
(the tests check this for every registered model against the eager step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cozoo.continual.base import ContinualModule
from cozoo.runtime.metadata import STEP_NAME


class ExportError(ValueError):
    """A model (or a request) that cannot be exported; the message names the problem."""


@dataclass(frozen=True)
class StateTensor:
    """One state tensor of the step: its exported name, the module that holds it and its key there."""

    name: str
    module: str
    key: str
    shape: tuple[int, ...]  # batch dimension first
    dtype: torch.dtype


def state_name(module_path: str, key: str) -> str:
    return f"state.{module_path}.{key}" if module_path else f"state.{key}"


class StateLayout:
    """The state tensors of a warmed-up model (every module has stepped), in module order."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modules: dict[str, ContinualModule] = {
            path: m for path, m in model.named_modules() if isinstance(m, ContinualModule)
        }
        tensors = []
        for path, module in self.modules.items():
            for key, value in module.stream_state().items():
                tensors.append(StateTensor(state_name(path, key), path, key, tuple(value.shape), value.dtype))
        names = [t.name for t in tensors]
        if len(set(names)) != len(names) or STEP_NAME in names:
            raise ExportError(f"state tensor names collide: {names}")
        self.tensors: list[StateTensor] = tensors

    def read(self) -> list[torch.Tensor]:
        """The model's current state tensors, in layout order."""
        current = {path: m.stream_state() for path, m in self.modules.items()}
        return [current[t.module][t.key] for t in self.tensors]

    def load(self, values: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> None:
        """Make the model step on from ``values`` (layout order)."""
        per_module: dict[str, dict[str, torch.Tensor]] = {}
        for tensor, value in zip(self.tensors, values, strict=True):
            per_module.setdefault(tensor.module, {})[tensor.key] = value
        for path, state in per_module.items():
            self.modules[path].load_stream_state(state)

    def zeros(self, batch: int, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """Initial state of ``batch`` new streams."""
        return [torch.zeros((batch, *t.shape[1:]), dtype=t.dtype, device=device) for t in self.tensors]


class PhaseStep(nn.Module):
    """One step of ``model`` at its current step count, as a function of the frame and the state tensors.

    ``step`` is the stream's step counter (an int64 scalar tensor): ``valid`` says whether the eager step
    returns a prediction at that step (past warm-up, on a stride), and the counter advances as the model's
    own counters do, cycling through one period once past the first output.
    """

    def __init__(self, model: nn.Module, layout: StateLayout, first_output: int, stride: int,
                 logits_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.model = model
        self.__dict__["layout"] = layout  # not a child module
        self.first_output, self.stride = first_output, stride
        self.logits_shape = logits_shape  # without the batch dimension

    def forward(self, frame: torch.Tensor, step: torch.Tensor,
                *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        first, stride = self.first_output, self.stride
        valid = (step >= first) & ((step - first) % stride == 0)
        following = step + 1
        following = following - stride * (following >= first + stride).to(step.dtype)
        self.layout.load(state)
        logits = self.model._step(frame)  # type: ignore[operator]
        if logits is None:  # no output at this phase: zeros, flagged not valid
            logits = frame.new_zeros((frame.shape[0], *self.logits_shape))
        return (logits, valid, following, *self.layout.read())
