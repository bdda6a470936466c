"""The common PyTorch port's ``c3d.pickle`` (Sports-1M C3D) -> `cozoo.models.c3d`.

The cozoo model uses the port's parameter names and shapes (``conv1`` .. ``conv5b``, ``fc6`` .. ``fc8``,
each ``.weight``/``.bias``), so conversion only checks that no foreign key is present; missing keys and wrong
shapes are reported when loading. The port's forward applies a softmax, which has no parameters: the cozoo
model returns the logits before it.
"""

from __future__ import annotations

from cozoo.weights.converters import CheckpointMismatchError, StateDict, register_converter

_LAYERS = ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b", "fc6", "fc7", "fc8")
_KEYS = frozenset(f"{layer}.{kind}" for layer in _LAYERS for kind in ("weight", "bias"))


@register_converter("c3d_pickle", "c3d")
def convert_c3d_pickle(state_dict: StateDict) -> StateDict:
    """Return the port's state dict unchanged after checking its keys; unknown keys raise."""
    unknown = sorted(set(state_dict) - _KEYS)
    if unknown:
        raise CheckpointMismatchError(f"unrecognised C3D keys ({len(unknown)}): {', '.join(unknown[:20])}")
    return dict(state_dict)
