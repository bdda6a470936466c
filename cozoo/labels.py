"""Class names of the label sets the pretrained models predict (index = logit position).

``kinetics400``: the 400 Kinetics-400 classes in alphabetical order (0 abseiling ... 399 zumba), the order
of every published Kinetics checkpoint in the manifest. ``sports1m``: the 487 Sports-1M classes in the
dataset's label order, as used by the C3D port.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import torch

_SIZES = {"kinetics400": 400, "sports1m": 487}


def available_label_sets() -> list[str]:
    return sorted(_SIZES)


@cache
def _read(label_set: str) -> tuple[str, ...]:
    text = (resources.files("cozoo") / "data" / f"{label_set}.txt").read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != _SIZES[label_set]:
        raise RuntimeError(
            f"label file for {label_set!r} has {len(names)} names, expected {_SIZES[label_set]}"
        )
    return names


def class_names(label_set: str = "kinetics400") -> list[str]:
    """The class names of ``label_set`` ("kinetics400" or "sports1m"), indexed like the logits."""
    if label_set not in _SIZES:
        raise ValueError(f"unknown label set {label_set!r}; available: {', '.join(available_label_sets())}")
    return list(_read(label_set))


def class_index(name: str, label_set: str = "kinetics400") -> int:
    """Index of class ``name`` in ``label_set``."""
    names = _read(label_set) if label_set in _SIZES else class_names(label_set)
    try:
        return names.index(name)
    except ValueError:
        raise ValueError(f"{name!r} is not a class of {label_set!r}") from None


def top_k(logits: torch.Tensor, k: int = 5, label_set: str = "kinetics400") -> list[list[tuple[str, float]]]:
    """The ``k`` most probable classes per row of ``logits`` (N, C), as (name, softmax probability) pairs."""
    names = class_names(label_set)
    if logits.dim() != 2 or logits.shape[1] != len(names):
        raise ValueError(
            f"expected logits of shape (N, {len(names)}) for {label_set!r}, got {tuple(logits.shape)}"
        )
    probs, idx = logits.float().softmax(dim=1).topk(min(k, len(names)), dim=1)
    return [
        [(names[i], p) for p, i in zip(row_p, row_i, strict=True)]
        for row_p, row_i in zip(probs.tolist(), idx.tolist(), strict=True)
    ]
