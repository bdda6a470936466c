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
    resolve_url,
    sha256_file,
    verify_hash,
    weights_dir,
)
from cozoo.weights.manifest import load_manifest, manifest_entry, manifest_names


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
    """torch's own reason, without its advice to retry with ``weights_only=False`` (never safe here)."""
    match = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
    if match:
        return match.group(1).strip()
    lines = [line.strip() for line in str(err).splitlines() if line.strip()
             and "weights_only" not in line and not line.startswith("Check the documentation")]
    return lines[0] if lines else type(err).__name__


def _text_kind(path: Path) -> str | None:
    """"an HTML page" when the file's first bytes say so (what a server sends instead of a missing file)."""
    with open(path, "rb") as f:
        start = f.read(512).lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "an HTML page"
    return None


def _blocked_global(err: Exception) -> str | None:
    """The global (``module.name``) that torch's weights-only unpickler refused, if that is the error."""
    match = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)", str(err))
    return match.group(1) if match else None


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
        blocked = _blocked_global(err)
        if blocked is not None:
            raise WeightsFormatError(
                f"{what} is unsafe and was refused: its pickle asks to load the Python global {blocked}, "
                "which a checkpoint of tensors never needs (loading it could run code on this machine). "
                "cozoo reads checkpoints with torch.load(weights_only=True) and never runs code from them; "
                "do not load this file with weights_only=False: get the checkpoint from its publisher"
            ) from None
        looks_like = _text_kind(path)
        if looks_like:
            raise WeightsFormatError(
                f"{what} is not a PyTorch checkpoint: it is {looks_like} (a download that returned a web "
                "page, "
                "e.g. a login, error or redirect page, instead of the file?)") from None
        reason = _unpickler_reason(err)
        raise WeightsFormatError(
            f"{what} is not a PyTorch checkpoint (unreadable pickle: {reason})") from None
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


def _install(entry: dict[str, Any], partial: PartialFile, keep_source: bool, what: str, origin: str) -> Path:
    """Convert a verified file, check it fits the model it was published for (as registered, whatever
    the caller builds), and move it and its conversion into the cache; ``origin`` (where the file came
    from) is recorded in the converted file's metadata."""
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
                  metadata={**_metadata(entry, partial.sha256, partial.size), "origin": origin})
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
    if url is not None and not force:
        refuse_other_models_url(entry, url)
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
            return _install(entry, partial, keep_source=False, what=str(source),
                            origin=f"cached source file {source}")
        except WeightsError:
            source.unlink()  # damaged or wrong: fetch a fresh copy below
    partial = acquire(entry, url=url, progress=progress)
    what = f"the downloaded {entry['source']['filename']}"
    origin = f"download {url or resolve_url(entry, None) or entry['source'].get('hf')}"
    try:
        verify_hash(entry, partial.sha256, what, expected=sha256)
        return _install(entry, partial, keep_source=True, what=what, origin=str(origin))
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


def refuse_other_models_file(entry: dict[str, Any], filename: str, what: str) -> None:
    """Refuse a file named as another model's published checkpoint: same-shaped models (X3D-S and X3D-M,
    X3D-XS and X3D-S) load each other's weights without a mismatch, so the name is the only clue."""
    owners = [n for n in manifest_names()
              if n != entry["name"] and load_manifest()["models"][n]["source"]["filename"] == filename]
    if owners:
        raise WeightsError(
            f"{what}: {filename} is the published checkpoint of {owners[0]!r}, not of {entry['name']!r} "
            f"(whose file is {entry['source']['filename']}); refused, as same-shaped models load each "
            "other's weights without any error. If this really is the right file, pass --force (force=True)"
        )


def refuse_other_models_url(entry: dict[str, Any], url: str) -> None:
    """`refuse_other_models_file` for the file name at the end of ``url``."""
    refuse_other_models_file(entry, url.split("?")[0].rstrip("/").rsplit("/", 1)[-1], f"--url {url}")


def import_checkpoint(name: str, path: str | Path, sha256: str | None = None, force: bool = False) -> Path:
    """Verify and convert a checkpoint file copied by hand (air-gapped machines); returns the converted
    file's path. A file named as another model's published checkpoint is refused unless ``force``."""
    entry = require_entry(name)
    sha256 = _valid_sha256(sha256)
    source, published = Path(path).expanduser(), entry["source"]["filename"]
    if not force:
        refuse_other_models_file(entry, source.name, f"importing {path} as {name!r}")
    if source.suffix == ".safetensors":
        raise WeightsFormatError(
            f"{path} is a safetensors file: `weights import` takes the published checkpoint ({published}); "
            f"load a state dict in cozoo's layout with create_model({name!r}, pretrained={str(path)!r})"
        )
    partial = copy_local(source, weights_dir(entry["name"]), published)
    try:
        verify_hash(entry, partial.sha256, str(path), expected=sha256)
        installed = _install(entry, partial, keep_source=True, what=str(path),
                             origin=f"import {source.resolve()}{' (forced)' if force else ''}")
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
