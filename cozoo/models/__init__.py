"""Model families. Importing this package registers every variant with `cozoo.registry`."""

import importlib

_FAMILIES = ("x3d", "c3d", "baselines", "resnet3d", "slowfast", "r2plus1d")

for _family in _FAMILIES:
    try:
        importlib.import_module(f"{__name__}.{_family}")
    except ModuleNotFoundError as _err:  # a family not written yet
        if _err.name != f"{__name__}.{_family}":
            raise
