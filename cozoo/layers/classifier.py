"""Finding and replacing a model's classifier (its last ``nn.Linear``), for any family."""

from __future__ import annotations

from torch import nn

from cozoo.layers.heads import FeatureHeads


def classifier(model: nn.Module) -> tuple[str, nn.Linear]:
    """The qualified name and module of the model's classifier (its last ``nn.Linear``)."""
    last_name, last = None, None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name, last = module_name, module
    if last is None or last_name is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier")
    return last_name, last


def class_count(model: nn.Module) -> int:
    """The model's outputs (0 for a zoo model whose classifier was reset to the identity: features out)."""
    if isinstance(model, FeatureHeads):
        return model.num_classes
    return classifier(model)[1].out_features


def reset_classifier(model: nn.Module, num_classes: int) -> None:
    """Replace the last ``nn.Linear`` of a model by a fresh one with ``num_classes`` outputs (a zoo model's
    own `reset_classifier`, which also takes 0: features out)."""
    if isinstance(model, FeatureHeads):
        model.reset_classifier(num_classes)
        return
    if num_classes < 1:
        raise ValueError(f"num_classes must be a whole number >= 1 for a {type(model).__name__} (0, features "
                         f"out, needs a model with forward_head, as the zoo's have), got {num_classes!r}")
    last_name, last = classifier(model)
    parent = model.get_submodule(last_name.rpartition(".")[0]) if "." in last_name else model
    new = nn.Linear(last.in_features, num_classes, bias=last.bias is not None)
    new.__class__ = type(last)  # keeps a continual linear layer continual
    new.to(device=last.weight.device, dtype=last.weight.dtype)
    setattr(parent, last_name.rpartition(".")[2], new)
