"""PyTorchVideo X3D checkpoints (``model_state`` of ``X3D_{XS,S,M,L}.pyth``) -> `cozoo.models.x3d`.

PyTorchVideo names the stem's spatial conv ``conv_t`` and its temporal conv ``conv_xy`` (the arguments of its
``Conv2plus1d`` are swapped); they map to ``stem.conv_xy`` (1x3x3) and ``stem.conv_t`` (5x1x1) here.
The classifier ``blocks.5.proj`` maps to ``head.fc``; the softmax PyTorchVideo applies in eval mode has no
parameters and is not part of the cozoo model, which returns logits.
"""

from __future__ import annotations

from cozoo.weights.converters import StateDict, register_converter
from cozoo.weights.converters.keys import BN, Rules, map_keys, rename

_BLOCK = r"blocks\.([1-4])\.res_blocks\.(\d+)\."  # stage index, block index

# (pattern on the PyTorchVideo key, replacement giving the cozoo key); the first full match wins.
_RULES: Rules = (
    (r"blocks\.0\.conv\.conv_t\.weight", r"stem.conv_xy.weight"),
    (r"blocks\.0\.conv\.conv_xy\.weight", r"stem.conv_t.weight"),
    (rf"blocks\.0\.norm\.{BN}", r"stem.bn.\1"),
    (_BLOCK + r"branch1_conv\.weight", r"stage\1.\2.shortcut.conv.weight"),
    (_BLOCK + rf"branch1_norm\.{BN}", r"stage\1.\2.shortcut.bn.\3"),
    (_BLOCK + r"branch2\.conv_([abc])\.weight", r"stage\1.\2.branch.conv_\3.weight"),
    (_BLOCK + rf"branch2\.norm_([ac])\.{BN}", r"stage\1.\2.branch.bn_\3.\4"),
    (_BLOCK + rf"branch2\.norm_b\.0\.{BN}", r"stage\1.\2.branch.bn_b.\3"),
    (_BLOCK + r"branch2\.norm_b\.1\.block\.0\.(weight|bias)", r"stage\1.\2.branch.se.fc1.\3"),
    (_BLOCK + r"branch2\.norm_b\.1\.block\.2\.(weight|bias)", r"stage\1.\2.branch.se.fc2.\3"),
    (r"blocks\.5\.pool\.pre_conv\.weight", r"head.conv5.weight"),
    (rf"blocks\.5\.pool\.pre_norm\.{BN}", r"head.bn5.\1"),
    (r"blocks\.5\.pool\.post_conv\.weight", r"head.lin5.weight"),
    (r"blocks\.5\.proj\.(weight|bias)", r"head.fc.\1"),
)


@register_converter("pytorchvideo", "x3d")
def convert_pytorchvideo_x3d(state_dict: StateDict) -> StateDict:
    """Rename every key (unknown keys raise); BatchNorm counters missing from a checkpoint are set to 0."""
    return map_keys(state_dict, lambda key: rename(key, _RULES), "PyTorchVideo X3D")
