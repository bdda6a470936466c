"""Access to ``weights_manifest.json``: where each published checkpoint lives and what it is.

The canonical file is ``weights_manifest.json`` at the repository top level; the package ships it as
``cozoo/weights_manifest.json`` (a link to it). ``COZOO_MANIFEST=/path/to/file.json`` replaces it, e.g. to
point cozoo at a private mirror. The layout is described by ``cozoo/weights/schema.json``.
"""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

MANIFEST_ENV = "COZOO_MANIFEST"
HASH_POLICIES = ("sha256", "sha256_prefix", "unpublished")
_REQUIRED = ("source", "format", "hash", "dataset", "labels", "num_classes", "preprocessing")


class ManifestError(ValueError):
    """The manifest file is missing, unreadable or malformed."""


def manifest_path() -> Path:
    """The manifest in use: ``$COZOO_MANIFEST`` if set, else the one shipped with the package."""
    override = os.environ.get(MANIFEST_ENV)
    if override:
        return Path(override).expanduser()
    return Path(str(resources.files("cozoo") / "weights_manifest.json"))


def load_manifest(path: str | Path | None = None) -> dict[str, Any]:
    """The parsed manifest (a fresh copy; re-read when the file changes)."""
    path = Path(path) if path is not None else manifest_path()
    try:
        stat = path.stat()
    except OSError as err:
        raise ManifestError(f"weights manifest {path} cannot be read: {err}") from None
    return copy.deepcopy(_parse(str(path), stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=8)
def _parse(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """Parse once per (path, modification time, size)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ManifestError(f"weights manifest {path} is not valid JSON: {err}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ManifestError(f"weights manifest {path} has no 'models' object")
    for name, entry in models.items():
        _check_entry(path, name, entry)
    return data


def _check_entry(path: str, name: str, entry: Any) -> None:
    """The fields the loading code relies on; the full schema is checked by the test suite."""
    where = f"weights manifest {path}, entry {name!r}"
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: not an object")
    missing = [key for key in _REQUIRED if key not in entry]
    if missing:
        raise ManifestError(f"{where}: missing {', '.join(missing)}")
    if not isinstance(entry["source"], dict) or not entry["source"].get("filename"):
        raise ManifestError(f"{where}: source.filename is required")
    filename = str(entry["source"]["filename"])
    if "/" in filename or "\\" in filename or filename in (".", ".."):
        raise ManifestError(f"{where}: source.filename must be a plain file name, got {filename!r}")
    policy = entry["hash"].get("policy") if isinstance(entry["hash"], dict) else None
    if policy not in HASH_POLICIES:
        raise ManifestError(f"{where}: hash.policy must be one of {', '.join(HASH_POLICIES)}, got {policy!r}")
    if policy != "unpublished" and not entry["hash"].get(policy):
        raise ManifestError(f"{where}: hash.policy is {policy!r} but hash.{policy} is empty")


def manifest_names() -> list[str]:
    """Names with their own manifest entry (checkpoint owners), sorted."""
    return sorted(load_manifest()["models"])


def checkpoint_owner(name: str) -> str | None:
    """The entry that names ``name``: its own, or one listing it under ``variants`` (same weights, e.g.
    another clip length). Reads the manifest only: no torch, no model registry."""
    models = load_manifest()["models"]
    if name in models:
        return name
    return next((owner for owner, entry in models.items() if name in entry.get("variants", ())), None)


def weights_name(name: str) -> str | None:
    """Whose checkpoint serves ``name``: `checkpoint_owner`, or for a continual model the regular model it
    is transferred from."""
    owner = checkpoint_owner(name)
    if owner is not None:
        return owner
    # The registry (every model family, so torch) only where the manifest does not name the model.
    from cozoo.models import get_config
    from cozoo.models.registry import UnknownModelError

    try:
        source = get_config(name).source
    except UnknownModelError:
        return None
    return weights_name(source) if source else None


def manifest_entry(name: str) -> dict[str, Any] | None:
    """The manifest entry for ``name`` (with ``"name"`` set to the checkpoint owner), or None."""
    owner = weights_name(name)
    if owner is None:
        return None
    return {"name": owner, **load_manifest()["models"][owner]}


def has_pretrained(name: str) -> bool:
    return manifest_entry(name) is not None


def published_figures(name: str) -> dict[str, Any] | None:
    """Published figures of ``name`` itself (for model cards): the accuracy records for this model (a
    variant or continual counterpart has its own; records without ``model`` are the checkpoint owner's),
    GFLOPs per clip (the owner's only), parameter count, citations, dataset, labels, licence."""
    entry = manifest_entry(name)
    if entry is None:
        return None
    keys = ("gflops_protocol", "params_m", "citations", "dataset", "labels", "license")
    figures = {key: entry.get(key) for key in keys}
    figures["accuracy"] = [r for r in entry["accuracy"] if r.get("model", entry["name"]) == name]
    figures["gflops"] = entry.get("gflops") if name == entry["name"] else None
    return figures
