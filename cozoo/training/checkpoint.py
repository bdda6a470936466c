"""Training checkpoints: atomic writes, random-number-generator states, safe reads.

A checkpoint is a plain dict of tensors, numbers, strings and containers, so it loads with
``torch.load(weights_only=True)``: ``model``, ``optimizer``, ``scheduler``, ``scaler`` (state dicts),
``epoch`` (completed epochs), ``step_in_epoch``, ``global_step``, ``epoch_stats`` (running sums of a
partly done epoch), ``rng`` (torch, CUDA, numpy, python), ``config``, ``label_map``, ``best_val_acc``,
``metrics`` (one record per finished epoch) and ``format``.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cozoo.data.video import PathLike

FORMAT = "cozoo-finetune-1"


class CheckpointError(RuntimeError):
    """A training checkpoint is missing, unreadable or not a cozoo fine-tuning checkpoint."""


def save_atomic(obj: dict[str, Any], path: PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` it over ``path``.

    A crash at any moment leaves either the old file or the new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write a text file atomically (temporary file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Read a fine-tuning checkpoint (tensors and plain containers only; no code is run)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types on damaged files
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a cozoo fine-tuning checkpoint (format {FORMAT!r})")
    return state


def get_rng_state() -> dict[str, Any]:
    """States of torch's CPU (and CUDA) generators, numpy's global generator and Python's ``random``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Seed torch, numpy and ``random`` for a run and restore the caller's states afterwards."""
    saved = get_rng_state()
    try:
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        yield
    finally:
        set_rng_state(saved)
