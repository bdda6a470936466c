"""cozoo: pretrained video classifiers and their continual (frame-by-frame) counterparts."""

from cozoo.registry import create_model, list_models, model_info

__all__ = ["create_model", "list_models", "model_info"]
__version__ = "0.1.0"
