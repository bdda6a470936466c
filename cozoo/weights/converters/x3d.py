"""PyTorchVideo X3D checkpoints (``model_state`` of ``X3D_{XS,S,M,L}.pyth``) -> `cozoo.models.x3d`.

PyTorchVideo names the stem's spatial conv ``conv_t`` and its temporal conv ``conv_xy`` (the arguments of its
``Conv2plus1d`` are swapped); they map to ``stem.conv_xy`` (1x3x3) and ``stem.conv_t`` (5x1x1) here.
The classifier ``blocks.5.proj`` maps to ``head.fc``; the softmax PyTorchVideo applies in eval mode has no
parameters and is not part of the cozoo model, which returns logits.
"""

from __future__ import annotations

import re

import torch

from cozoo.weights.converters import CheckpointMismatchError, StateDict, register_converter

_BN_BUFFERS = r"(weight|bias|running_mean|running_var|num_batches_tracked)"

_BLOCK = r"blocks\.([1-4])\.res_blocks\.(\d+)\."  # stage index, block index

# (pattern on the PyTorchVideo key, replacement giving the cozoo key); the first full match wins.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"blocks\.0\.conv\.conv_t\.weight", r"stem.conv_xy.weight"),
        (r"blocks\.0\.conv\.conv_xy\.weight", r"stem.conv_t.weight"),
        (rf"blocks\.0\.norm\.{_BN_BUFFERS}", r"stem.bn.\1"),
        (_BLOCK + r"branch1_conv\.weight", r"stage\1.\2.shortcut.conv.weight"),
        (_BLOCK + rf"branch1_norm\.{_BN_BUFFERS}", r"stage\1.\2.shortcut.bn.\3"),
        (_BLOCK + r"branch2\.conv_([abc])\.weight", r"stage\1.\2.branch.conv_\3.weight"),
        (_BLOCK + rf"branch2\.norm_([ac])\.{_BN_BUFFERS}", r"stage\1.\2.branch.bn_\3.\4"),
        (_BLOCK + rf"branch2\.norm_b\.0\.{_BN_BUFFERS}", r"stage\1.\2.branch.bn_b.\3"),
        (_BLOCK + r"branch2\.norm_b\.1\.block\.0\.(weight|bias)", r"stage\1.\2.branch.se.fc1.\3"),
        (_BLOCK + r"branch2\.norm_b\.1\.block\.2\.(weight|bias)", r"stage\1.\2.branch.se.fc2.\3"),
        (r"blocks\.5\.pool\.pre_conv\.weight", r"head.conv5.weight"),
        (rf"blocks\.5\.pool\.pre_norm\.{_BN_BUFFERS}", r"head.bn5.\1"),
        (r"blocks\.5\.pool\.post_conv\.weight", r"head.lin5.weight"),
        (r"blocks\.5\.proj\.(weight|bias)", r"head.fc.\1"),
    )
)


def _rename(key: str) -> str | None:
    for pattern, replacement in _RULES:
        if pattern.fullmatch(key):
            return pattern.sub(replacement, key)
    return None


@register_converter("pytorchvideo", "x3d")
def convert_pytorchvideo_x3d(state_dict: StateDict) -> StateDict:
    """Rename every key (unknown keys raise); BatchNorm counters missing from a checkpoint are set to 0."""
    out: StateDict = {}
    unknown = []
    for key, value in state_dict.items():
        new_key = _rename(key)
        if new_key is None:
            unknown.append(key)
        else:
            out[new_key] = value
    if unknown:
        raise CheckpointMismatchError(
            f"unrecognised PyTorchVideo X3D keys ({len(unknown)}): {', '.join(sorted(unknown)[:20])}"
        )
    for key in [k for k in out if k.endswith(".running_mean")]:
        counter = key.replace(".running_mean", ".num_batches_tracked")
        out.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return out
