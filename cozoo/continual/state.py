"""A model's step-mode state, read and written from outside: what a pool of streams sharing one batched
model needs to keep each batch row's stream separate.

Step mode keeps two kinds of state (see `base`):

* *counters*: Python ints that decide which modules run at a step (``_steps`` of windowed layers and
  global pools, ``_trigger_seen`` of merges). They depend only on how many frames the stream has seen,
  never on data, and are the same for every batch row.
* *state tensors*: buffers with a batch dim (``_state`` caches of convs and pools, ``_fifos`` of
  merges, ``_hc`` of the LSTM), allocated at the first step that reaches their module.

`StateLayout` names every state tensor by its place in the model, so a caller can snapshot the rows it
must keep, and `check_known_state` refuses a model holding step state under a name listed here neither
as a counter nor as a state tensor (a pool would not mask it, and streams would leak into each other).

Both warm-up modes (``reset(warmup=...)``) use the same state tensors; what differs is the schedule (the
modules read their ``_warmup`` flag at each step: `StateLayout.set_warmup` switches it between the
steps of streams of different modes) and the values a stream starts from (`initial_value`). Shapes do
not differ: a padded stream emits the same source elements on the same steps as a valid one, plus
earlier ones, so a merge pairs its paths with the same lags (FIFO depths) in both modes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from cozoo.continual.base import ContinualModule

#: Python step counters, per module: equal for all batch rows, a function of the frames seen.
COUNTER_ATTRIBUTES = ("_steps", "_trigger_seen")
#: Tensors (or lists/tuples of tensors, entries possibly None), with the dim that holds the batch.
STATE_ATTRIBUTES = {"_state": 0, "_fifos": 0, "_hc": 1}  # the LSTM's (h, c) are (layers, N, hidden)

#: Where one state tensor lives: (module index in `StateLayout.modules`, attribute, entry or -1).
StateKey = tuple[int, str, int]


class StateLayout:
    """The continual modules of ``model`` in a fixed order, with accessors for their counters and state."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = [m for m in model.modules() if isinstance(m, ContinualModule)]

    def counters(self) -> tuple[int, ...]:
        """Every module's step counters, in a fixed order."""
        return tuple(
            m.__dict__[name] for m in self.modules for name in COUNTER_ATTRIBUTES if name in m.__dict__
        )

    def set_counters(self, counters: tuple[int, ...]) -> None:
        """Restore counters read by `counters` from this layout (same model)."""
        values = iter(counters)
        for module in self.modules:
            for name in COUNTER_ATTRIBUTES:
                if name in module.__dict__:
                    module.__dict__[name] = next(values)

    def set_warmup(self, warmup: str) -> None:
        """Switch every module's warm-up mode (as `ContinualModule.reset` sets it) without touching state:
        the next step runs with that mode's schedule (the caller sets the counters to match)."""
        for module in self.modules:
            module.__dict__["_warmup"] = warmup

    def initial_value(self, key: StateKey) -> float:
        """The value the state tensor ``key`` holds when a stream starts (its module's
        `ContinualModule.initial_state_value`, in the module's current warm-up mode)."""
        return self.modules[key[0]].initial_state_value()

    def tensors(self) -> Iterator[tuple[StateKey, torch.Tensor, int]]:
        """Every allocated state tensor with its key and batch dim (entries not yet allocated are skipped)."""
        for index, module in enumerate(self.modules):
            for name, batch_dim in STATE_ATTRIBUTES.items():
                value = module.__dict__.get(name)
                if isinstance(value, torch.Tensor):
                    yield (index, name, -1), value, batch_dim
                elif isinstance(value, (list, tuple)):
                    for entry, item in enumerate(value):
                        if isinstance(item, torch.Tensor):
                            yield (index, name, entry), item, batch_dim

    def check_known_state(self) -> None:
        """Raise if a continual module holds tensors under an attribute not in `STATE_ATTRIBUTES`."""
        for module in self.modules:
            for name, value in module.__dict__.items():
                if name in STATE_ATTRIBUTES or name.startswith("__"):
                    continue
                items = value if isinstance(value, (list, tuple)) else (value,)
                if any(isinstance(item, torch.Tensor) for item in items):
                    raise TypeError(
                        f"{type(module).__name__} keeps tensor state in {name!r}, which "
                        "cozoo.continual.state does not know: it cannot be kept per batch row "
                        "(add it to STATE_ATTRIBUTES with its batch dim)"
                    )

