"""Fetching, importing, converting and loading pretrained weights.

Cache layout (``$COZOO_HOME/weights/<name>/``): the published file under its published name (e.g.
``X3D_XS.pyth``) and ``<name>.safetensors``, the converted state dict in cozoo's layout. A checkpoint is
converted once; later loads read the safetensors file and never touch the network. Published files
are pickles: they are read with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers and refuses anything else, so no code from a checkpoint is ever run.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from cozoo.layers.classifier import classifier, reset_classifier
from cozoo.models import get_config
from cozoo.models.registry import ModelConfig
from cozoo.version import __version__
from cozoo.weights.converters import StateDict, convert_state_dict, load_state_dict_strict
from cozoo.weights.download import (
    PartialFile,
    VerificationError,
    WeightsError,
    acquire,
    copy_local,
    sha256_file,
    verify_hash,
    weights_dir,
)
from cozoo.weights.manifest import manifest_entry


class WeightsFormatError(WeightsError):
    """The file is not a checkpoint in the expected format."""


def converted_path(name: str) -> Path:
    return weights_dir(name) / f"{name}.safetensors"


def source_path(entry: dict[str, Any]) -> Path:
    return weights_dir(entry["name"]) / entry["source"]["filename"]


def require_entry(name: str) -> dict[str, Any]:
    get_config(name)  # unknown names raise with close matches
    entry = manifest_entry(name)
    if entry is None:
        raise ValueError(f"{name!r} has no published checkpoint in the weights manifest; "
                         f"pass create_model({name!r}, pretrained='path/to/checkpoint') instead")
    return entry


def _unpickler_reason(err: Exception) -> str:
    match = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
    return match.group(1).strip() if match else (str(err).strip().splitlines() or [type(err).__name__])[0]


def read_checkpoint(
    path: Path, fmt: str | None = None, what: str | None = None
) -> tuple[StateDict, str | None]:
    """Read a checkpoint safely; returns its state dict and format (detected if ``fmt`` is None).

    ``what`` names the file in error messages (defaults to ``path``).
    """
    what = what or str(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path)), fmt
        except Exception as err:  # safetensors raises its own error types for bad headers
            raise WeightsFormatError(f"{what} is not a readable safetensors file: {err}") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _unpickler_reason(err)
        if "Unsupported global" in reason:
            raise WeightsFormatError(
                f"{what} was refused: it references Python objects other than tensors and plain containers "
                f"({reason.split(' was not')[0]}); cozoo reads checkpoints with "
                "torch.load(weights_only=True) and never runs code from them"
            ) from err
        raise WeightsFormatError(f"{what} is not a PyTorch checkpoint (unreadable pickle: {reason})") from err
    except Exception as err:  # torch.load raises RuntimeError, EOFError, zipfile errors... on garbage
        first = (str(err).strip().splitlines() or [""])[0]
        raise WeightsFormatError(
            f"{what} is not a PyTorch checkpoint ({type(err).__name__}: {first})"
        ) from err
    if isinstance(obj, Mapping) and "model_state" in obj and fmt in (None, "pytorchvideo"):
        obj, fmt = obj["model_state"], "pytorchvideo"
    elif fmt == "pytorchvideo":
        keys = ", ".join(map(str, list(obj)[:5])) if isinstance(obj, Mapping) else type(obj).__name__
        raise WeightsFormatError(
            f"{what} is not a PyTorchVideo checkpoint: no 'model_state' entry (found {keys})"
        )
    elif fmt is None and isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    elif fmt is None and isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]  # a `cozoo finetune` checkpoint: {"model": state_dict, "label_map", "config", ...}
    if not (isinstance(obj, Mapping) and obj
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())):
        raise WeightsFormatError(f"{what} does not hold a state dict (a mapping of names to tensors)")
    return dict(obj), fmt


def fit_state_dict(
    model: nn.Module, config: ModelConfig, state_dict: StateDict, fmt: str | None,
    take_class_count: bool = False,
) -> StateDict:
    """Convert ``state_dict`` from ``fmt`` (unless it already has the model's keys) and load it strictly.

    ``take_class_count``: first give the model's classifier the file's number of outputs (a checkpoint
    fine-tuned on other classes, in any layout); otherwise a different count is a mismatch."""
    if fmt is not None and set(state_dict) != set(model.state_dict()):
        state_dict = convert_state_dict(fmt, config.family, state_dict)
    if take_class_count:
        name, head = classifier(model)
        weight = state_dict.get(f"{name}.weight")
        if weight is not None and weight.dim() == 2 and weight.shape[0] != head.out_features:
            reset_classifier(model, int(weight.shape[0]))
    load_state_dict_strict(model, state_dict)
    return state_dict


def _metadata(entry: dict[str, Any], sha256: str, size: int) -> dict[str, str]:
    return {"model": entry["name"], "format": entry["format"], "source_filename": entry["source"]["filename"],
            "source_sha256": sha256, "source_size": str(size), "cozoo_version": __version__}


def cached_metadata(entry: dict[str, Any]) -> dict[str, str] | None:
    """Metadata of the converted file if it is present, readable and current for ``entry``; else None."""
    path = converted_path(entry["name"])
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception:  # a damaged file is treated as absent and rebuilt
        return None
    expected = _metadata(entry, meta.get("source_sha256", ""), int(meta.get("source_size", "0") or 0))
    if any(meta.get(key) != value for key, value in expected.items()):
        return None
    try:
        verify_hash(entry, meta["source_sha256"], str(path))
    except WeightsError:
        return None
    return meta


def _install(entry: dict[str, Any], partial: PartialFile, keep_source: bool, what: str) -> Path:
    """Convert a verified file, check it fits the model it was published for (as registered, whatever
    the caller builds), and move it and its conversion into the cache."""
    name = entry["name"]
    config = get_config(name)
    state_dict, _ = read_checkpoint(partial.path, entry["format"], what)
    model = config.builder(num_classes=config.num_classes, **config.builder_kwargs)
    converted = fit_state_dict(model, config, state_dict, entry["format"])
    target = converted_path(name)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # clone: safetensors refuses tensors that share memory, which converters may produce
        save_file({k: v.detach().contiguous().clone() for k, v in converted.items()}, str(tmp),
                  metadata=_metadata(entry, partial.sha256, partial.size))
        if keep_source:
            os.replace(partial.path, source_path(entry))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _ensure_cached(name: str, url: str | None = None, force: bool = False, progress: bool = True,
                   sha256: str | None = None) -> Path:
    entry = require_entry(name)
    sha256 = _valid_sha256(sha256)
    meta = None if force else cached_metadata(entry)
    if meta is not None:
        _check_pinned(entry, meta["source_sha256"], sha256, "the cached checkpoint")
        return converted_path(entry["name"])
    source = source_path(entry)
    if source.is_file() and not force:  # the published file is here: convert again, no network
        digest, size = sha256_file(source)
        _check_pinned(entry, digest, sha256, str(source))
        try:
            verify_hash(entry, digest, str(source))
            partial = PartialFile(source, digest, size)
            return _install(entry, partial, keep_source=False, what=str(source))
        except WeightsError:
            source.unlink()  # damaged or wrong: fetch a fresh copy below
    partial = acquire(entry, url=url, progress=progress)
    what = f"the downloaded {entry['source']['filename']}"
    try:
        verify_hash(entry, partial.sha256, what, expected=sha256)
        return _install(entry, partial, keep_source=True, what=what)
    finally:
        partial.path.unlink(missing_ok=True)


def _valid_sha256(sha256: str | None) -> str | None:
    """``sha256`` lower-cased, or an error if it is not 64 hexadecimal digits."""
    if sha256 is None:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ValueError(f"a sha256 is 64 hexadecimal digits, got {sha256!r}")
    return sha256.lower()


def _check_pinned(entry: dict[str, Any], digest: str, pinned: str | None, what: str) -> None:
    """A cached file whose hash differs from the one the caller pins is kept, and the call refused: the
    pin may be the mistake; ``force`` replaces the file."""
    if pinned is not None and digest != pinned.lower():
        raise VerificationError(
            f"{what} of {entry['name']!r} has sha256 {digest}, not the requested {pinned.lower()}; it was "
            "kept. Check the hash, or download again with force=True (cozoo weights fetch --force)"
        )


def fetch(name: str, url: str | None = None, force: bool = False, progress: bool = True,
          sha256: str | None = None) -> Path:
    """Make sure ``name``'s published checkpoint is downloaded, verified and converted; returns the
    path of the converted ``.safetensors`` file. ``url`` overrides the manifest's URL; ``sha256`` pins the
    expected file hash (useful where the publisher gives none); ``force`` downloads again."""
    return _ensure_cached(name, url=url, force=force, progress=progress, sha256=sha256)


def import_checkpoint(name: str, path: str | Path, sha256: str | None = None) -> Path:
    """Verify and convert a checkpoint file copied by hand (air-gapped machines); returns the converted
    file's path."""
    entry = require_entry(name)
    sha256 = _valid_sha256(sha256)
    source, published = Path(path).expanduser(), entry["source"]["filename"]
    if source.suffix == ".safetensors":
        raise WeightsFormatError(
            f"{path} is a safetensors file: `weights import` takes the published checkpoint ({published}); "
            f"load a state dict in cozoo's layout with create_model({name!r}, pretrained={str(path)!r})"
        )
    partial = copy_local(source, weights_dir(entry["name"]), published)
    try:
        verify_hash(entry, partial.sha256, str(path), expected=sha256)
        installed = _install(entry, partial, keep_source=True, what=str(path))
    finally:
        partial.path.unlink(missing_ok=True)
    if source.name != published:
        warnings.warn(f"imported {source.name} as {name!r}, whose published file is {published}: make sure "
                      "it is that checkpoint (files of same-shaped models, e.g. X3D-S and X3D-M, load into "
                      "each other)", stacklevel=2)
    return installed


def load_pretrained(model: nn.Module, config: ModelConfig, path: str | None) -> None:
    """Load published weights (``path`` None: cached, fetched once) or a checkpoint file into ``model``.

    A file may be in the published format of the model's manifest entry (``.pyth``/``.pth``/``.pickle``), a
    PyTorchVideo ``{"model_state": ...}`` file, a ``cozoo finetune`` checkpoint, or a state dict /
    ``.safetensors`` file in cozoo's layout. The model's classifier takes the file's number of classes
    (`create_model` then resets it if other classes are asked for).
    """
    if path is None:
        converted = _ensure_cached(config.name)
        load_state_dict_strict(model, load_file(str(converted)))
        return
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint file {file} does not exist")
    entry = manifest_entry(config.name)
    if entry is not None and file.name == entry["source"]["filename"]:
        verify_hash(entry, sha256_file(file)[0], str(file))
    state_dict, fmt = read_checkpoint(file)
    if fmt is None and entry is not None:
        fmt = entry["format"]
    fit_state_dict(model, config, state_dict, fmt, take_class_count=True)
