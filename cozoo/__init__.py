"""cozoo: pretrained video classifiers and their continual (frame-by-frame) counterparts.

The top-level names are imported on first use (PEP 562), so torch-free parts such as `cozoo.runtime` can
be imported without PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "count_flops": "cozoo.flops",
    "create_model": "cozoo.registry",
    "fuse_conv_bn": "cozoo.fuse",
    "list_models": "cozoo.registry",
    "model_info": "cozoo.registry",
    "to_continual": "cozoo.continual",
}

__all__ = sorted(_LAZY)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cozoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
