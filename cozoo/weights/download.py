"""Getting checkpoint files into the cache: HTTP or Hugging Face download, local copy, hash checks.

Every file is first written to a uniquely named ``.partial`` file inside the cache directory and only
renamed into place by the caller once it has been verified, so an interrupted or rejected download
never leaves a half-written file under its final name.

Environment: ``COZOO_HOME`` (cache root, default ``~/.cache/cozoo``); ``COZOO_OFFLINE=1`` or
``HF_HUB_OFFLINE=1`` (no network at all); ``HF_ENDPOINT`` (Hugging Face mirror);
``COZOO_WEIGHTS_URL_<NAME>`` (URL of one checkpoint, NAME upper-cased with ``_`` for other characters)
and ``COZOO_WEIGHTS_BASE_URL`` (a mirror holding the files under their published names).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tqdm import tqdm

from cozoo.version import __version__

HOME_ENV = "COZOO_HOME"
OFFLINE_ENVS = ("COZOO_OFFLINE", "HF_HUB_OFFLINE")
BASE_URL_ENV = "COZOO_WEIGHTS_BASE_URL"
_CHUNK = 1 << 20
_TRUE = {"1", "true", "yes", "on"}


class WeightsError(RuntimeError):
    """Base class of the errors raised while getting or reading pretrained weights."""


class DownloadError(WeightsError):
    """The file could not be downloaded completely."""


class VerificationError(WeightsError):
    """The file's content does not match the published hash."""


class OfflineError(WeightsError):
    """Offline mode is on and the file is not in the cache."""


@dataclass(frozen=True)
class PartialFile:
    """A file written into the cache under a temporary name, with its sha256 and size."""

    path: Path
    sha256: str
    size: int


def cozoo_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or "~/.cache/cozoo").expanduser()


def weights_dir(name: str) -> Path:
    """Cache directory of one checkpoint: ``$COZOO_HOME/weights/<name>``."""
    return cozoo_home() / "weights" / name


def offline_reason() -> str | None:
    """``"VAR=value"`` of the first offline switch that is on, else None."""
    for var in OFFLINE_ENVS:
        value = os.environ.get(var, "")
        if value.strip().lower() in _TRUE:
            return f"{var}={value}"
    return None


def url_env_var(name: str) -> str:
    return "COZOO_WEIGHTS_URL_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def resolve_url(entry: dict[str, Any], url: str | None = None) -> str | None:
    """The HTTP URL to use: ``url``, else the per-model env var, the base-URL env var, the manifest's URL."""
    if url:
        return url
    specific = os.environ.get(url_env_var(entry["name"]))
    if specific:
        return specific
    base = os.environ.get(BASE_URL_ENV)
    if base:
        return f"{base.rstrip('/')}/{entry['source']['filename']}"
    return entry["source"].get("url")


def sha256_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def verify_hash(entry: dict[str, Any], sha256: str, what: str, expected: str | None = None) -> None:
    """Check ``sha256`` against ``expected`` (if given) and the hash the manifest entry publishes."""
    checks = []
    if expected:
        checks.append(("the requested sha256", expected.lower(), sha256 == expected.lower()))
    policy = entry["hash"]["policy"]
    if policy == "sha256":
        published = entry["hash"]["sha256"].lower()
        checks.append(("the published sha256", published, sha256 == published))
    elif policy == "sha256_prefix":
        prefix = entry["hash"]["sha256_prefix"].lower()
        checks.append(("the published sha256 prefix", prefix, sha256.startswith(prefix)))
    for label, want, ok in checks:
        if not ok:
            raise VerificationError(
                f"{what} does not match {label} of {entry['name']!r}: expected {want}, got sha256 {sha256}. "
                "The file is corrupt or not the published checkpoint; it was not kept."
            )


@contextmanager
def _partial(directory: Path, filename: str) -> Iterator[tuple[Path, BinaryIO]]:
    """A new temporary file in ``directory``, removed again unless the body completes."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".partial", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield path, out
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _copy_stream(src: BinaryIO, out: BinaryIO, bar: tqdm | None = None) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := src.read(_CHUNK):
        out.write(chunk)
        digest.update(chunk)
        size += len(chunk)
        if bar is not None:
            bar.update(len(chunk))
    return digest.hexdigest(), size


def download_url(url: str, directory: Path, filename: str, progress: bool = True,
                 timeout: float = 60.0) -> PartialFile:
    """Stream ``url`` into a partial file in ``directory``; a short body (vs. Content-Length) is an error."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"cozoo/{__version__}"})
    except ValueError as err:  # e.g. a local path: urllib wants a scheme
        raise DownloadError(f"cannot download {url!r}: {err} (a file on this machine is imported with "
                            "`cozoo weights import NAME PATH`)") from err
    with _partial(directory, filename) as (path, out):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                html = response.headers.get("Content-Type", "").startswith("text/html")
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                if not html:
                    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=filename,
                              disable=not progress, file=sys.stderr) as bar:
                        sha256, size = _copy_stream(response, out, bar)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            raise DownloadError(f"downloading {url} failed: {err}") from err
        if html:
            raise DownloadError(f"{url} serves an HTML page, not a checkpoint (a login or error page, or a "
                                "link to a download page rather than to the file?)")
        if total is not None and size != total:
            raise DownloadError(
                f"downloading {url} failed: the connection ended after {size} of {total} bytes; try again"
            )
    return PartialFile(path, sha256, size)


def download_hf(hf: dict[str, Any], directory: Path, filename: str) -> PartialFile:
    """Download ``hf`` ({repo_id, filename, revision}) with huggingface_hub into a partial file.

    huggingface_hub shows its own progress bar and honours ``HF_ENDPOINT`` (read at call time here).
    """
    from huggingface_hub import hf_hub_download

    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".hf-", dir=directory))
    try:
        with _partial(directory, filename) as (path, out):
            try:
                local = hf_hub_download(
                    hf["repo_id"], hf["filename"], revision=hf.get("revision"), local_dir=staging,
                    endpoint=os.environ.get("HF_ENDPOINT") or None,
                )
            except Exception as err:  # huggingface_hub raises many HTTP/validation error types
                raise DownloadError(f"downloading {hf['filename']} from Hugging Face repo {hf['repo_id']} "
                                    f"failed: {err}") from err
            with open(local, "rb") as src:
                sha256, size = _copy_stream(src, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PartialFile(path, sha256, size)


def copy_local(source: Path, directory: Path, filename: str) -> PartialFile:
    """Copy a file the user provides into a partial file in ``directory``."""
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint file {source} does not exist")
    with _partial(directory, filename) as (path, out), open(source, "rb") as src:
        sha256, size = _copy_stream(src, out)
    return PartialFile(path, sha256, size)


def import_hint(entry: dict[str, Any]) -> str:
    filename = entry["source"]["filename"]
    name = entry["name"]
    return (f"copy {filename} to this machine and run `cozoo weights import {name} /path/to/{filename}` "
            f"(or pass create_model({name!r}, pretrained='/path/to/{filename}'))")


#: A partial download untouched for this long is a leftover of a killed process (SIGKILL, power loss).
STALE_PARTIAL_S = 3600.0


def remove_stale_partials(directory: Path, max_age_s: float = STALE_PARTIAL_S) -> list[Path]:
    """Delete partial files and Hugging Face staging folders in ``directory`` that nothing has written to
    for ``max_age_s`` (downloads in progress keep writing, so they stay); returns what was removed."""
    if not directory.is_dir():
        return []
    cutoff, removed = time.time() - max_age_s, []
    for path in directory.iterdir():
        if not (path.name.endswith(".partial") or path.name.startswith(".hf-")):
            continue
        try:
            files = [path] if path.is_file() else [path, *path.rglob("*")]
            if max(f.stat().st_mtime for f in files) < cutoff:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed.append(path)
        except OSError:  # removed meanwhile by another process, or not ours to remove
            continue
    return removed


def acquire(entry: dict[str, Any], url: str | None = None, progress: bool = True) -> PartialFile:
    """Download the entry's checkpoint into a partial file in its cache directory (not yet verified).
    Stale leftovers of killed downloads there are removed first."""
    filename = entry["source"]["filename"]
    directory = weights_dir(entry["name"])
    remove_stale_partials(directory)
    http_url = resolve_url(entry, url)
    hf = entry["source"].get("hf")
    where = http_url or (f"Hugging Face repo {hf['repo_id']}" if hf else None)
    reason = offline_reason()
    if reason:
        raise OfflineError(
            f"offline mode is on ({reason}) and {filename} for {entry['name']!r} is not in the cozoo cache "
            f"{directory}. On a machine with network access download it"
            + (f" from {where}" if where else "") + f", then {import_hint(entry)}."
        )
    if http_url or hf:
        try:
            if http_url:
                return download_url(http_url, directory, filename, progress=progress)
            return download_hf(hf, directory, filename)
        except DownloadError as err:
            raise DownloadError(f"{err}. Without network access, {import_hint(entry)}.") from err.__cause__
    known = entry["source"].get("unofficial_url")
    raise DownloadError(
        f"{entry['name']!r} has no official download"
        + (f" (an unofficial copy of {filename} is known at {known})" if known else "")
        + f". To use it, {import_hint(entry)}; or name a URL with --url / {url_env_var(entry['name'])}."
    )
