"""cozoo: pretrained video classifiers and their continual (frame-by-frame) counterparts."""

import importlib

from cozoo.continual import to_continual
from cozoo.flops import count_flops
from cozoo.fuse import fuse_conv_bn
from cozoo.registry import create_model, list_models, model_info

__all__ = [
    "StreamPool", "count_flops", "create_model", "fuse_conv_bn", "list_models", "model_info", "to_continual",
]
__version__ = "0.1.0"

_LAZY = {"StreamPool": "cozoo.inference.pool"}  # loaded on first use (PEP 562)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cozoo' has no attribute {name!r}")
