"""Fine-tuning: recipes (`load_config`), the training loop (`finetune`), checkpoints and the continual
evaluation of the fine-tuned weights.

Command line: ``cozoo finetune CONFIG.yaml [--resume] [key=value ...]``.
"""

from cozoo.training.checkpoint import CheckpointError, load_checkpoint, save_atomic
from cozoo.training.config import ConfigError, FinetuneConfig, apply_overrides, load_config
from cozoo.training.continual_check import StreamingResult, build_continual, streaming_accuracy
from cozoo.training.loop import FinetuneResult, Progress, Trainer, finetune, load_finetuned

__all__ = [
    "CheckpointError",
    "ConfigError",
    "FinetuneConfig",
    "FinetuneResult",
    "Progress",
    "StreamingResult",
    "Trainer",
    "apply_overrides",
    "build_continual",
    "finetune",
    "load_checkpoint",
    "load_config",
    "load_finetuned",
    "save_atomic",
    "streaming_accuracy",
]
