"""Continual containers: a sequence, and a residual merge that delays the shortcut to align branches."""

from __future__ import annotations

import torch
from torch import nn

from cozoo.continual.base import ContinualModule, shift_in


def _children(module: nn.Module) -> list[ContinualModule]:
    children = list(module.children())
    for child in children:
        if not isinstance(child, ContinualModule):
            raise TypeError(f"{type(module).__name__} holds a non-continual module {type(child).__name__}")
    return children  # type: ignore[return-value]


class CoSequential(ContinualModule, nn.Sequential):
    """``nn.Sequential`` of continual modules; a step stops at the first child that yields nothing."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self._bind_input(0)

    def _bind_input(self, skip: int) -> int:
        for layer in _children(self):
            skip = layer._bind_input(skip)
        return skip

    @property
    def frame_rank(self) -> int | None:  # type: ignore[override]
        layers = _children(self)
        return layers[0].frame_rank if layers else None

    @property
    def expected_channels(self) -> int | None:
        for layer in _children(self):
            if layer.expected_channels is not None or layer.frame_rank is not None:
                return layer.expected_channels
        return None

    def _fold(self) -> tuple[int, int, int, int]:
        """(receptive_field, stride, temporal_padding, first_output) of the composition."""
        rf, stride, padding, first = 1, 1, 0, 0
        for layer in _children(self):
            rf += (layer.receptive_field - 1) * stride
            padding += layer.temporal_padding * stride
            first += layer.first_output * stride
            stride *= layer.stride
        return rf, stride, padding, first

    @property
    def receptive_field(self) -> int:
        return self._fold()[0]

    @property
    def stride(self) -> int:
        return self._fold()[1]

    @property
    def temporal_padding(self) -> int:
        return self._fold()[2]

    @property
    def first_output(self) -> int:
        return self._fold()[3]

    def _step(self, frame: torch.Tensor) -> torch.Tensor | None:
        out: torch.Tensor | None = frame
        for layer in _children(self):
            out = layer._step(out)
            if out is None:
                return None
        return out


class CoIdentity(ContinualModule, nn.Identity):
    frame_rank = None

    def _step(self, frame: torch.Tensor) -> torch.Tensor:
        return frame


class CoResidual(ContinualModule, nn.Module):
    """``activation(branch(x) + shortcut(x))`` with the shortcut delayed to match the branch.

    Both paths see the same input; each drops the source outputs that depended on temporal padding,
    the branch (larger receptive field) more of them. The shortcut output that pairs with the branch's
    first output is its ``shortcut_start``-th; in step mode a FIFO of the last ``shortcut_lag + 1``
    shortcut outputs holds it until the branch emits. Both paths must share a temporal stride.
    """

    def __init__(
        self, branch: ContinualModule, shortcut: ContinualModule | None, activation: ContinualModule | None
    ) -> None:
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.activation = activation
        # Not registered as a child: it is `shortcut` itself (or a stateless identity).
        self.__dict__["_path"] = shortcut if shortcut is not None else CoIdentity()
        if branch.stride != self._path.stride:
            raise ValueError(f"residual branch stride {branch.stride} != shortcut stride {self._path.stride}")
        self._bind_input(0)
        self._reset_state()

    def _bind_input(self, skip: int) -> int:
        branch_skip = self.branch._bind_input(skip)
        self.shortcut_start = branch_skip - self._path._bind_input(skip)
        # Shortcut outputs emitted up to (and including) the branch's first output step.
        gap = self.branch.first_output - self._path.first_output
        self.shortcut_lag = gap // self.stride - self.shortcut_start
        if self.shortcut_start < 0 or self.shortcut_lag < 0 or gap % self.stride:
            raise ValueError(
                f"residual paths cannot be aligned (branch first output {self.branch.first_output}, "
                f"shortcut first output {self._path.first_output}, stride {self.stride})"
            )
        return branch_skip

    @property
    def frame_rank(self) -> int | None:  # type: ignore[override]
        return self.branch.frame_rank

    @property
    def expected_channels(self) -> int | None:
        return self.branch.expected_channels

    @property
    def receptive_field(self) -> int:
        return self.branch.receptive_field

    @property
    def stride(self) -> int:
        return self.branch.stride

    @property
    def temporal_padding(self) -> int:
        return self.branch.temporal_padding

    @property
    def first_output(self) -> int:
        return self.branch.first_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.branch(x)
        skip = x if self.shortcut is None else self.shortcut(x)
        if not self.source_padding:
            skip = skip[:, :, self.shortcut_start : self.shortcut_start + main.shape[2]]
        out = main + skip
        return out if self.activation is None else self.activation(out)

    def _reset_state(self) -> None:
        self._fifo: torch.Tensor | None = None

    def _step(self, frame: torch.Tensor) -> torch.Tensor | None:
        main = self.branch._step(frame)
        skip = frame if self.shortcut is None else self.shortcut._step(frame)
        if skip is not None:
            if self._fifo is None:
                self._fifo = skip.new_zeros(*skip.shape[:2], self.shortcut_lag + 1, *skip.shape[2:])
            shift_in(self._fifo, skip)
        if main is None:
            return None
        assert self._fifo is not None, "residual branch emitted before its shortcut"
        out = main + self._fifo[:, :, 0]
        return out if self.activation is None else self.activation._step(out)
