"""Seed baselines built on a frame-wise 2D CNN (Karpathy et al. 2014; Donahue et al. 2015).

All three share a small 2D trunk written with ``Conv3d`` kernels of temporal size 1, so it runs on every frame
independently: ``trunk = nn.Sequential(layer1, .., layer4)``, each ``layerK = nn.Sequential(conv, bn, relu)``
with a spatial stride of 2 (a 112 crop gives a 7x7 map). Widths default to (32, 64, 128, 256).

- ``late_fusion``: ``trunk pool flatten dropout fc``; ``pool`` is ``GlobalAvgPool3d``, so the prediction is
  the average over frames (and positions) of per-frame features, which the linear ``fc`` turns into the
  average of per-frame logits.
- ``early_fusion``: as late fusion, but ``trunk.layer1.conv`` has temporal kernel = ``frames`` and no temporal
  padding, i.e. a 2D conv over the 3*frames stacked channels of the clip; the later layers are per-frame.
- ``cnn_lstm``: ``trunk pool lstm`` then a classifier. ``pool`` is ``PerFrame(nn.AdaptiveAvgPool2d(1))``
  giving (N, F, T, 1, 1); ``lstm`` is `FrameLSTM`. Many-to-one (default): ``lstm`` keeps the last step and is
  followed by ``dropout flatten fc`` -> (N, classes). ``many_to_many=True``: ``head = PerFrame(Sequential(
  flatten, dropout, fc))`` classifies every step -> (N, classes, T).

No published checkpoints: these are for training from scratch and for comparing with the 3D models.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from cozoo.layers.blocks import Flatten, GlobalAvgPool3d, PerFrame
from cozoo.layers.heads import VideoClassifier
from cozoo.layers.recurrent import FrameLSTM
from cozoo.models.registry import ModelConfig, register_model

DEFAULT_WIDTHS = (32, 64, 128, 256)


def _conv_bn_relu(in_channels: int, out_channels: int, frames: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv3d(
                in_channels,
                out_channels,
                (frames, kernel, kernel),
                stride=(1, 2, 2),
                padding=(0, kernel // 2, kernel // 2),
                bias=False,
            ),
            bn=nn.BatchNorm3d(out_channels),
            relu=nn.ReLU(),
        )
    )


def _trunk(widths: Sequence[int], first_frames: int = 1) -> nn.Sequential:
    """Per-frame 2D CNN; ``first_frames`` > 1 makes the first conv fuse that many frames (early fusion)."""
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    in_channels = 3
    for index, width in enumerate(widths):
        first = index == 0
        layers[f"layer{index + 1}"] = _conv_bn_relu(
            in_channels, width, first_frames if first else 1, kernel=5 if first else 3
        )
        in_channels = width
    return nn.Sequential(layers)


def _pooled_classifier(
    trunk: nn.Sequential, features: int, num_classes: int, dropout: float
) -> nn.Sequential:
    layers = OrderedDict(trunk=trunk, pool=GlobalAvgPool3d(), flatten=Flatten(), dropout=nn.Dropout(dropout),
                         fc=nn.Linear(features, num_classes))
    return VideoClassifier(layers, head_start="pool", classifier_name="fc")


def late_fusion(
    num_classes: int = 400, widths: Sequence[int] = DEFAULT_WIDTHS, dropout: float = 0.5
) -> nn.Sequential:
    """Per-frame CNN, features averaged over time, linear classifier."""
    return _pooled_classifier(_trunk(widths), widths[-1], num_classes, dropout)


def early_fusion(
    num_classes: int = 400, frames: int = 8, widths: Sequence[int] = DEFAULT_WIDTHS, dropout: float = 0.5
) -> nn.Sequential:
    """First conv spans ``frames`` frames without temporal padding: clips need at least that many."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    return _pooled_classifier(_trunk(widths, first_frames=frames), widths[-1], num_classes, dropout)


def cnn_lstm(
    num_classes: int = 400,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    hidden_size: int = 256,
    num_layers: int = 1,
    many_to_many: bool = False,
    dropout: float = 0.5,
) -> nn.Sequential:
    """Per-frame CNN features into an LSTM; many-to-one (N, classes) or many-to-many (N, classes, T)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        trunk=_trunk(widths),
        pool=PerFrame(nn.AdaptiveAvgPool2d(1)),
        lstm=FrameLSTM(widths[-1], hidden_size, num_layers, last_only=not many_to_many),
    )
    classifier: OrderedDict[str, nn.Module] = OrderedDict(
        flatten=Flatten(), dropout=nn.Dropout(dropout), fc=nn.Linear(hidden_size, num_classes)
    )
    if many_to_many:
        layers["head"] = PerFrame(nn.Sequential(classifier))
    else:
        layers.update(dropout=classifier["dropout"], flatten=classifier["flatten"], fc=classifier["fc"])
    classifier_name = "head.module.fc" if many_to_many else "fc"
    return VideoClassifier(layers, head_start="pool", classifier_name=classifier_name)


_BASELINES = (
    ("late_fusion", late_fusion, "late fusion (Karpathy et al. 2014): per-frame 2D CNN, features averaged"),
    ("early_fusion", early_fusion, "early fusion (Karpathy et al. 2014): first conv over all 8 frames"),
    ("cnn_lstm", cnn_lstm, "CNN-LSTM (Donahue et al. 2015): per-frame 2D CNN into an LSTM, last step"),
)

for _name, _builder, _what in _BASELINES:
    register_model(
        ModelConfig(
            name=_name,
            family="baselines",
            builder=_builder,
            frames=8,
            sampling_rate=8,
            train_crop=112,
            test_crop=112,
            description=f"Baseline {_what}; small trunk, no published weights (train from scratch).",
        )
    )
