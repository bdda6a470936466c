"""The common PyTorch port's ``c3d.pickle`` (Sports-1M C3D) -> `cozoo.models.c3d`.

Keys ``conv1`` .. ``conv5b``, ``fc7``, ``fc8`` (``.weight``/``.bias``) keep their names. The port's ``fc6``
is a Linear over ``pool5.view(-1, 8192)`` of a (512, 1, 4, 4) map; its weight is reshaped to the equivalent
``Conv3d`` kernel (4096, 512, 1, 4, 4). The port's forward applies a softmax, which has no parameters:
the cozoo model returns the logits before it.
"""

from __future__ import annotations

from cozoo.models.c3d import FC6_KERNEL
from cozoo.weights.converters import CheckpointMismatchError, StateDict, register_converter

_LAYERS = ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b", "fc6", "fc7", "fc8")
_KEYS = frozenset(f"{layer}.{kind}" for layer in _LAYERS for kind in ("weight", "bias"))


@register_converter("c3d_pickle", "c3d")
def convert_c3d_pickle(state_dict: StateDict) -> StateDict:
    """Copy the port's keys, reshaping ``fc6.weight``; unknown keys raise."""
    unknown = sorted(set(state_dict) - _KEYS)
    if unknown:
        raise CheckpointMismatchError(f"unrecognised C3D keys ({len(unknown)}): {', '.join(unknown[:20])}")
    out = dict(state_dict)
    if "fc6.weight" in out:
        weight = out["fc6.weight"]
        window = FC6_KERNEL[0] * FC6_KERNEL[1] * FC6_KERNEL[2]
        if weight.dim() != 2 or weight.shape[1] % window:
            raise CheckpointMismatchError(
                f"fc6.weight: expected a Linear weight over 512*1*4*4 inputs, got shape {tuple(weight.shape)}"
            )
        out["fc6.weight"] = weight.reshape(weight.shape[0], weight.shape[1] // window, *FC6_KERNEL)
    return out
