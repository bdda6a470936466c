"""Key-renaming helpers shared by the converters: regex rules and a strict whole-state-dict mapping."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

from cozoo.weights.converters import CheckpointMismatchError, StateDict

#: The parameter and buffer names of a BatchNorm layer, as a regex group.
BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
#: (pattern on the source key, replacement giving the cozoo key); the first full match wins.
Rules = Sequence[tuple[str, str]]


def rename(key: str, rules: Rules) -> str | None:
    """The first rule whose pattern matches all of ``key``, applied; ``None`` when none matches."""
    for pattern, replacement in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(replacement)
    return None


def map_keys(state_dict: StateDict, convert_key: Callable[[str], str | None], what: str) -> StateDict:
    """Rename every key with ``convert_key``; keys it maps to ``None`` raise `CheckpointMismatchError`.
    BatchNorm counters (``num_batches_tracked``) that a checkpoint leaves out are set to 0."""
    out: StateDict = {}
    unknown = []
    for key, value in state_dict.items():
        new = convert_key(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise CheckpointMismatchError(
            f"unexpected keys for a {what} checkpoint ({len(unknown)}): {', '.join(sorted(unknown)[:20])}"
        )
    for key in [k for k in out if k.endswith(".running_mean")]:
        counter = key.replace(".running_mean", ".num_batches_tracked")
        out.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return out
