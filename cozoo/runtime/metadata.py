"""The metadata file written beside an exported step (``NAME.onnx`` + ``NAME.json``), and its checks.

Torch-free: read by `cozoo.runtime`, written by `cozoo.export`. The ONNX graph's interface:

* inputs ``frame`` (N, 3, crop, crop) float32, ``state.step`` () int64, then every state tensor
  ``state.<module path>.<buffer>`` (batch first);
* outputs ``logits``, ``valid`` () bool, ``next_state.step``, then ``next_state.<...>`` for each state.

A stream starts with every state at its ``initial`` value (zeros; ``state.step`` 0) and feeds each step's
``next_state.*`` back as the next step's ``state.*``. ``valid`` is true exactly where the PyTorch step
returns a prediction (past warm-up, every ``stride`` steps).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FORMAT = "cozoo-onnx-step"
FORMAT_VERSION = 1
FRAME_NAME = "frame"
STEP_NAME = "state.step"
LOGITS_NAME = "logits"
VALID_NAME = "valid"
NEXT_PREFIX = "next_"

#: ONNX element type names of the dtypes an exported step uses.
DTYPES = {"float32": "tensor(float)", "int64": "tensor(int64)", "bool": "tensor(bool)",
          "float16": "tensor(float16)", "float64": "tensor(double)"}


class MetadataError(ValueError):
    """A metadata file that is unreadable, incomplete, or does not describe the ONNX file beside it."""


def metadata_path(onnx_path: str | os.PathLike) -> Path:
    """The metadata file of an exported model: the ``.onnx`` path with a ``.json`` suffix."""
    return Path(onnx_path).with_suffix(".json")


def write_metadata(metadata: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``metadata`` as JSON atomically (a temporary file in the same folder, then a rename)."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.tmp")
    try:
        temp.write_text(json.dumps(metadata, indent=1) + "\n")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


_REQUIRED = ("format", "format_version", "model", "inputs", "outputs", "state", "schedule", "preprocessing",
             "sampling_rate", "labels", "opset")


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Load and sanity-check a metadata file (format, version, required keys)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metadata file not found: {os.fspath(path)!r} (cozoo export writes it "
                                "beside the .onnx file)")
    try:
        metadata = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MetadataError(f"{os.fspath(path)!r} is not valid JSON: {err}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise MetadataError(f"{os.fspath(path)!r} is not a cozoo export metadata file (format {FORMAT!r})")
    if metadata.get("format_version") != FORMAT_VERSION:
        version = metadata.get("format_version")
        raise MetadataError(f"{os.fspath(path)!r} has format version {version!r}; this runtime reads "
                            f"version {FORMAT_VERSION}")
    missing = [key for key in _REQUIRED if key not in metadata]
    if missing:
        raise MetadataError(f"{os.fspath(path)!r} lacks {', '.join(missing)}")
    return metadata


def check_signature(metadata: dict[str, Any], inputs: list[Any], outputs: list[Any], what: str) -> None:
    """Check the ONNX session's ``inputs``/``outputs`` (onnxruntime NodeArg lists) against ``metadata``:
    the same names in the same order, element types and shapes (a symbolic dimension matches ``None``)."""
    for kind, declared, actual in (("inputs", metadata["inputs"], inputs), ("outputs", metadata["outputs"],
                                                                            outputs)):
        names = [d["name"] for d in declared]
        got = [a.name for a in actual]
        if names != got:
            extra, lacking = sorted(set(got) - set(names)), sorted(set(names) - set(got))
            detail = (f"the ONNX file has {extra} that the metadata lacks and lacks {lacking}"
                      if extra or lacking else "in another order")
            raise MetadataError(f"{what}: the metadata does not match the ONNX file's {kind}: {detail}")
        for d, a in zip(declared, actual, strict=True):
            shape = [s if isinstance(s, int) else None for s in a.shape]
            if DTYPES.get(d["dtype"]) != a.type or list(d["shape"]) != shape:
                raise MetadataError(
                    f"{what}: {kind[:-1]} {d['name']!r} is {a.type} {shape} in the ONNX file but "
                    f"{d['dtype']} {list(d['shape'])} in the metadata (None: any batch size)")
