"""Converters from published checkpoint layouts into cozoo's definitions.

A converter maps a source state dict (already unwrapped, e.g. the ``model_state`` of a PyTorchVideo
``.pyth`` file) to a state dict whose keys are exactly those of a cozoo model. Register one per
(checkpoint format, model family) with `register_converter`; family modules live beside this file.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]
Converter = Callable[[StateDict], StateDict]

_CONVERTERS: dict[tuple[str, str], Converter] = {}
_FAMILY_MODULES = ("x3d", "c3d", "resnet3d", "slowfast", "r2plus1d")


class CheckpointMismatchError(ValueError):
    """A checkpoint's keys or shapes do not fit the target model."""


def register_converter(fmt: str, family: str) -> Callable[[Converter], Converter]:
    def decorate(fn: Converter) -> Converter:
        if (fmt, family) in _CONVERTERS:
            raise ValueError(f"converter for ({fmt!r}, {family!r}) registered twice")
        _CONVERTERS[(fmt, family)] = fn
        return fn

    return decorate


def _load_family_modules() -> None:
    for name in _FAMILY_MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise


def convert_state_dict(fmt: str, family: str, state_dict: StateDict) -> StateDict:
    """Convert ``state_dict`` from checkpoint format ``fmt`` into the layout of ``family``."""
    _load_family_modules()
    try:
        converter = _CONVERTERS[(fmt, family)]
    except KeyError:
        known = ", ".join(f"{f}/{m}" for f, m in sorted(_CONVERTERS))
        raise CheckpointMismatchError(
            f"no converter from checkpoint format {fmt!r} to model family {family!r} (known: {known})"
        ) from None
    return converter(state_dict)


def load_state_dict_strict(model: nn.Module, state_dict: StateDict) -> None:
    """Load ``state_dict`` into ``model``; missing/unexpected keys or shape mismatches raise, listing them."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong_shape = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if own[k].shape != state_dict[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}")
    if wrong_shape:
        problems.append(f"shape mismatches ({len(wrong_shape)}): {'; '.join(wrong_shape[:20])}")
    if problems:
        raise CheckpointMismatchError(
            f"checkpoint does not fit {type(model).__name__}: " + " | ".join(problems)
        )
    model.load_state_dict(state_dict, strict=True)
