"""The continual model container: a `CoSequential` with timm's features/heads interface
(`cozoo.layers.heads.FeatureHeads`) and per-step pooled features for streams."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cozoo.continual.containers import CoIdentity, CoSequential
from cozoo.continual.stateless import CoLinear
from cozoo.layers.heads import FeatureHeads


def _step(module: nn.Module, frame: Any) -> Any:
    return module._step(frame)  # type: ignore[operator]


class CoVideoClassifier(FeatureHeads, CoSequential):
    """A continual model. Clip mode: ``forward_features`` (before the windowed global pool) and
    ``forward_head`` as the regular model's, with one output per clip-mode position. Step mode:
    ``forward_step_features(frame)`` gives the pooled features of a step (N, F) where ``forward_step`` gives
    its logits (same schedule, same state: the classifier is stateless); ``model.stream(features=True)``."""

    def __init__(self, layers: Any, head_start: str, classifier_name: str, num_features: int) -> None:
        super().__init__(layers)
        self.init_heads(head_start, classifier_name, num_features)

    def forward_features(self, x: Any) -> Any:
        self._check_clip(x)
        return super().forward_features(x)

    def _step_features(self, frame: torch.Tensor) -> torch.Tensor | None:
        """One step up to the classifier (no input checks; capturable like `_step`)."""
        return self._run([*self.feature_modules(), *self.head_modules()], frame, _step, pre_logits=True)

    def forward_step_features(self, frame: torch.Tensor) -> torch.Tensor | None:
        """Feed one frame; returns the step's pooled features (N, F), or None (warm-up, strided step)."""
        self._check_frame(frame)
        try:
            return self._step_features(frame)
        except BaseException:
            self.reset()
            raise

    def _adapt_classifier(self, new: nn.Module, old: nn.Module) -> nn.Module:
        new.__class__ = CoLinear if isinstance(new, nn.Linear) else CoIdentity
        self.reset()  # a stream's signature names the old classifier's width
        return super()._adapt_classifier(new, old)
