"""Model families. Importing this package registers every variant with `cozoo.registry`, so its
`get_config` and `list_models` (re-exported here) see the whole zoo."""

from cozoo.models import baselines, c3d, r2plus1d, resnet3d, slowfast, x3d  # noqa: F401
from cozoo.models.continual_zoo import register_continual_variants
from cozoo.models.registry import get_config, list_models

register_continual_variants()

__all__ = ["get_config", "list_models"]
