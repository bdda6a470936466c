"""PyTorchVideo SlowFast checkpoints -> `cozoo.models.slowfast`.

PyTorchVideo's ``blocks`` are [stem, stage1 .. stage4, pool-concat, head]; blocks 0-4 hold
``multipathway_blocks.<pathway>`` and (0-3) ``multipathway_fusion``; block 6 holds ``proj``.
"""

from __future__ import annotations

import re

from cozoo.weights.converters import StateDict, register_converter
from cozoo.weights.converters.keys import BN, map_keys, rename
from cozoo.weights.converters.resnet3d import STEM_RULES, convert_res_stage_key

FUSE_RULES = ((r"conv_fast_to_slow\.weight", r"conv.weight"), (rf"norm\.{BN}", r"bn.\1"))


def _convert_key(key: str) -> str | None:
    match = re.fullmatch(r"blocks\.([0-4])\.multipathway_blocks\.([01])\.(.+)", key)
    if match:
        index, pathway, rest = match.groups()
        if index == "0":
            inner = rename(rest, STEM_RULES)
            return None if inner is None else f"stem.{pathway}.{inner}"
        return convert_res_stage_key(rest, f"stage{index}.{pathway}")
    match = re.fullmatch(r"blocks\.([0-3])\.multipathway_fusion\.(.+)", key)
    if match:
        inner = rename(match.group(2), FUSE_RULES)
        return None if inner is None else f"fuse{match.group(1)}.{inner}"
    return rename(key, ((r"blocks\.6\.proj\.(weight|bias)", r"head.fc.\1"),))


@register_converter("pytorchvideo", "slowfast")
def convert_pytorchvideo_slowfast(state_dict: StateDict) -> StateDict:
    """Map a PyTorchVideo ``create_slowfast`` (R50) state dict to cozoo's keys."""
    return map_keys(state_dict, _convert_key, "PyTorchVideo SlowFast")
