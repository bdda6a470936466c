"""The public model-zoo API in one place: configs and look-ups (`cozoo.models.registry`), building by name
(`cozoo.factory`) and the classifier helpers (`cozoo.layers.classifier`).

It only re-exports; the code lives in the layers named above, which never import this module.
"""

from cozoo.factory import create_model, list_models, model_info
from cozoo.layers.classifier import classifier, reset_classifier
from cozoo.models.registry import ModelConfig, UnknownModelError, get_config, register_model

__all__ = [
    "ModelConfig",
    "UnknownModelError",
    "classifier",
    "create_model",
    "get_config",
    "list_models",
    "model_info",
    "register_model",
    "reset_classifier",
]
