"""cozoo: pretrained video classifiers and their continual (frame-by-frame) counterparts.

The top-level names are imported on first use (PEP 562), so that torch-free parts of the package (the
ONNX runtime) can be imported where torch is not installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cozoo.version import __version__

if TYPE_CHECKING:
    from cozoo.continual import to_continual
    from cozoo.factory import create_model, list_models, model_info
    from cozoo.flops import count_flops
    from cozoo.fuse import fuse_conv_bn
    from cozoo.inference.pool import StreamPool

# public name -> module that defines it
_EXPORTS = {
    "StreamPool": "cozoo.inference.pool",
    "count_flops": "cozoo.flops",
    "create_model": "cozoo.factory",
    "fuse_conv_bn": "cozoo.fuse",
    "list_models": "cozoo.factory",
    "model_info": "cozoo.factory",
    "to_continual": "cozoo.continual",
}

__all__ = [
    "StreamPool", "__version__", "count_flops", "create_model", "fuse_conv_bn", "list_models", "model_info",
    "to_continual",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (also `cozoo.<submodule>` for ``import cozoo``)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"cozoo.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"cozoo.{name}":
            raise
        raise AttributeError(f"module 'cozoo' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
