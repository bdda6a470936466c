"""PyTorchVideo ResNet checkpoints (I3D-R50, Slow-R50, R(2+1)D-R50) -> `cozoo.models.resnet3d`.

PyTorchVideo stores ``blocks.<i>.…`` with ``blocks`` = [stem, stage1, (pool), stage2, stage3, stage4, head];
the parameter-free stage-1 pool of I3D shifts the later indices, so blocks are matched by order.
"""

from __future__ import annotations

import re

from cozoo.weights.converters import CheckpointMismatchError, StateDict, register_converter
from cozoo.weights.converters.keys import BN, Rules, map_keys, rename

# Keys of one PyTorchVideo ResBlock, relative to the block -> keys of a cozoo bottleneck Residual.
RES_BLOCK_RULES: Rules = (
    (r"branch1_conv\.weight", r"shortcut.conv.weight"),
    (rf"branch1_norm\.{BN}", r"shortcut.bn.\1"),
    (r"branch2\.conv_([abc])\.weight", r"branch.conv_\1.weight"),
    (rf"branch2\.norm_([abc])\.{BN}", r"branch.bn_\1.\2"),
    (r"branch2\.conv_b\.conv_(t|xy)\.weight", r"branch.conv_b.conv_\1.weight"),
    (rf"branch2\.conv_b\.norm\.{BN}", r"branch.conv_b.bn.\1"),
)
STEM_RULES: Rules = ((r"conv\.weight", r"conv.weight"), (rf"norm\.{BN}", r"bn.\1"))


def convert_res_stage_key(key: str, prefix: str) -> str | None:
    """``res_blocks.<j>.<block key>`` -> ``<prefix>.<j>.<cozoo block key>``."""
    match = re.fullmatch(r"res_blocks\.(\d+)\.(.+)", key)
    if not match:
        return None
    inner = rename(match.group(2), RES_BLOCK_RULES)
    return None if inner is None else f"{prefix}.{match.group(1)}.{inner}"


@register_converter("pytorchvideo", "resnet3d")
def convert_pytorchvideo_resnet3d(state_dict: StateDict) -> StateDict:
    """Map a PyTorchVideo ``create_resnet`` / ``create_r2plus1d`` state dict to cozoo's keys."""
    what = "PyTorchVideo ResNet"
    parsed = map_keys(state_dict, lambda key: key if re.fullmatch(r"blocks\.\d+\..+", key) else None, what)
    indices = sorted({int(key.split(".")[1]) for key in parsed})
    names = ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    if len(indices) != len(names):
        raise CheckpointMismatchError(
            f"a {what} checkpoint has parameters in 6 blocks (stem, 4 stages, head); "
            f"this one has them in blocks {indices}"
        )
    position = dict(zip(indices, names, strict=True))

    def convert_key(key: str) -> str | None:
        _, index, rest = key.split(".", 2)
        name = position[int(index)]
        if name == "stem":
            inner = rename(rest, STEM_RULES)
        elif name == "head":
            inner = rename(rest, ((r"proj\.(weight|bias)", r"fc.\1"),))
        else:
            return convert_res_stage_key(rest, name)
        return None if inner is None else f"{name}.{inner}"

    return map_keys(state_dict, convert_key, what)
