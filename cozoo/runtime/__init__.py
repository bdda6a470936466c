"""Run exported continual models (``cozoo export``) with onnxruntime, numpy and PyAV only: no PyTorch.

``OnnxVideoStreamer("out/cox3d_s.onnx").stream_video("video.mp4")`` yields the predictions ``cozoo stream``
gives; `OnnxStepper` steps preprocessed frames. The metadata format is in `cozoo.runtime.metadata`.
Names are imported on first use (PEP 562): the metadata module needs neither onnxruntime nor PyAV.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "FramePrediction": "cozoo.runtime.runner",
    "FramePreprocessor": "cozoo.runtime.preprocess",
    "MetadataError": "cozoo.runtime.metadata",
    "OnnxStepper": "cozoo.runtime.runner",
    "OnnxVideoStreamer": "cozoo.runtime.runner",
    "read_metadata": "cozoo.runtime.metadata",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cozoo.runtime' has no attribute {name!r}")
