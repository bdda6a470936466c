"""Model families. Importing this package registers every variant with `cozoo.registry`."""

from cozoo.models import baselines, c3d, r2plus1d, resnet3d, slowfast, x3d  # noqa: F401
from cozoo.models.continual_zoo import register_continual_variants

register_continual_variants()
