"""torchvision ``r2plus1d_18`` state dicts -> `cozoo.models.r2plus1d`.

torchvision's Conv2Plus1D is ``Sequential(conv_xy, bn, relu, conv_t)`` at indices 0, 1, 3; a block's
``conv1``/``conv2`` are ``Sequential(Conv2Plus1D, bn[, relu])`` and ``downsample`` is ``(conv, bn)``.
"""

from __future__ import annotations

from cozoo.weights.converters import StateDict, register_converter
from cozoo.weights.converters.keys import BN, map_keys, rename

RULES = (
    (r"stem\.0\.weight", r"stem.conv.conv_xy.weight"),
    (rf"stem\.1\.{BN}", r"stem.conv.bn.\1"),
    (r"stem\.3\.weight", r"stem.conv.conv_t.weight"),
    (rf"stem\.4\.{BN}", r"stem.bn.\1"),
    (r"layer([1-4])\.(\d+)\.conv1\.0\.0\.weight", r"stage\1.\2.branch.conv_a.conv_xy.weight"),
    (rf"layer([1-4])\.(\d+)\.conv1\.0\.1\.{BN}", r"stage\1.\2.branch.conv_a.bn.\3"),
    (r"layer([1-4])\.(\d+)\.conv1\.0\.3\.weight", r"stage\1.\2.branch.conv_a.conv_t.weight"),
    (rf"layer([1-4])\.(\d+)\.conv1\.1\.{BN}", r"stage\1.\2.branch.bn_a.\3"),
    (r"layer([1-4])\.(\d+)\.conv2\.0\.0\.weight", r"stage\1.\2.branch.conv_b.conv_xy.weight"),
    (rf"layer([1-4])\.(\d+)\.conv2\.0\.1\.{BN}", r"stage\1.\2.branch.conv_b.bn.\3"),
    (r"layer([1-4])\.(\d+)\.conv2\.0\.3\.weight", r"stage\1.\2.branch.conv_b.conv_t.weight"),
    (rf"layer([1-4])\.(\d+)\.conv2\.1\.{BN}", r"stage\1.\2.branch.bn_b.\3"),
    (r"layer([1-4])\.(\d+)\.downsample\.0\.weight", r"stage\1.\2.shortcut.conv.weight"),
    (rf"layer([1-4])\.(\d+)\.downsample\.1\.{BN}", r"stage\1.\2.shortcut.bn.\3"),
    (r"fc\.(weight|bias)", r"head.fc.\1"),
)


@register_converter("torchvision", "r2plus1d")
def convert_torchvision_r2plus1d(state_dict: StateDict) -> StateDict:
    """Map a torchvision ``VideoResNet`` (R(2+1)D) state dict to cozoo's keys."""
    return map_keys(state_dict, lambda key: rename(key, RULES), "torchvision R(2+1)D")
