"""Finding and replacing a model's classifier (its last ``nn.Linear``), for any family."""

from __future__ import annotations

from torch import nn


def classifier(model: nn.Module) -> tuple[str, nn.Linear]:
    """The qualified name and module of the model's classifier (its last ``nn.Linear``)."""
    last_name, last = None, None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name, last = module_name, module
    if last is None or last_name is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier")
    return last_name, last


def reset_classifier(model: nn.Module, num_classes: int) -> None:
    """Replace the last ``nn.Linear`` of a model by a fresh one with ``num_classes`` outputs."""
    last_name, last = classifier(model)
    parent = model.get_submodule(last_name.rpartition(".")[0]) if "." in last_name else model
    new = nn.Linear(last.in_features, num_classes, bias=last.bias is not None)
    new.__class__ = type(last)  # keeps a continual linear layer continual
    new.to(device=last.weight.device, dtype=last.weight.dtype)
    setattr(parent, last_name.rpartition(".")[2], new)
