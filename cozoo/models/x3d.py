"""X3D (Feichtenhofer, CVPR 2020), laid out like PyTorchVideo's ``create_x3d`` so its checkpoints convert 1:1.

The model is a plain ``nn.Sequential`` with children ``stem``, ``stage1`` .. ``stage4`` and ``head``:

- ``stem``: ``conv_xy`` (1x3x3, stride 1x2x2) -> ``conv_t`` (depthwise 5x1x1) -> ``bn`` -> ``relu``.
- ``stageK``: ``nn.Sequential`` of ``blocks.Residual(branch, shortcut, activation=ReLU)``.
  ``branch``: ``conv_a`` (1x1x1) ``bn_a`` ``relu_a`` ``conv_b`` (depthwise 3x3x3, padding 1) ``bn_b``
  [``se``] ``swish`` (``nn.SiLU``) ``conv_c`` (1x1x1) ``bn_c``; ``se`` on even-indexed blocks (0, 2, ..).
  The first block of a stage has ``shortcut = nn.Sequential(conv[, bn])`` (stride 1x2x2); the ``bn`` is absent
  in stage 1, whose width does not change (as in PyTorchVideo). Other blocks have ``shortcut=None``.
- ``head``: ``conv5`` (1x1x1) ``bn5`` ``relu5`` ``pool`` (GlobalAvgPool3d) ``lin5`` (1x1x1 to 2048, no bias)
  ``relu_lin5`` ``dropout`` ``flatten`` ``fc``.

PyTorchVideo's head pools with a fixed window sized for the training clip and crop, (T, ceil(crop / 32),
ceil(crop / 32)), at stride 1, runs lin5/ReLU/fc on every window and averages the windows' outputs. The
registered configs do the same (``head_window``: ``pool`` is a `blocks.WindowAvgPool3d` and ``window_mean``
a `blocks.WindowMean` after ``relu_lin5``), so at the test crop (182 for X3D-S: a 6x6 map, 4 windows of
5x5) the logits are PyTorchVideo's with ``head_activation=None``; its hub default averages the windows'
softmax instead (same top-1 whenever the windows agree). ``head_window=None`` pools globally.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn

from cozoo.layers.blocks import (
    Flatten,
    GlobalAvgPool3d,
    Residual,
    SqueezeExcitation,
    WindowAvgPool3d,
    WindowMean,
)
from cozoo.layers.heads import VideoClassifier
from cozoo.models.registry import ModelConfig, register_model

STAGE_DEPTHS = (1, 2, 5, 3)


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """Scale a channel count and round it to a multiple of ``divisor`` (PyTorchVideo/PySlowFast rule)."""
    scaled = width * multiplier
    out = max(min_width, int(scaled + divisor / 2) // divisor * divisor)
    if out < 0.9 * scaled:
        out += divisor
    return int(out)


def _bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=1e-5, momentum=0.1)


def _stem(out_channels: int, temporal_kernel: int = 5) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv_xy=nn.Conv3d(3, out_channels, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False),
            conv_t=nn.Conv3d(
                out_channels,
                out_channels,
                (temporal_kernel, 1, 1),
                padding=(temporal_kernel // 2, 0, 0),
                groups=out_channels,
                bias=False,
            ),
            bn=_bn(out_channels),
            relu=nn.ReLU(),
        )
    )


def _block(dim_in: int, dim_inner: int, dim_out: int, spatial_stride: int, se_hidden: int) -> Residual:
    """One bottleneck residual block; ``se_hidden=0`` leaves out squeeze-excitation."""
    stride = (1, spatial_stride, spatial_stride)
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv_a=nn.Conv3d(dim_in, dim_inner, 1, bias=False),
        bn_a=_bn(dim_inner),
        relu_a=nn.ReLU(),
        conv_b=nn.Conv3d(dim_inner, dim_inner, 3, stride=stride, padding=1, groups=dim_inner, bias=False),
        bn_b=_bn(dim_inner),
    )
    if se_hidden:
        layers["se"] = SqueezeExcitation(dim_inner, se_hidden)
    layers["swish"] = nn.SiLU()
    layers["conv_c"] = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
    layers["bn_c"] = _bn(dim_out)

    shortcut = None
    if dim_in != dim_out or spatial_stride > 1:
        short: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv3d(dim_in, dim_out, 1, stride=stride, bias=False)
        )
        if dim_in != dim_out:
            short["bn"] = _bn(dim_out)
        shortcut = nn.Sequential(short)
    return Residual(nn.Sequential(layers), shortcut, nn.ReLU())


def x3d(
    num_classes: int = 400,
    width_factor: float = 2.0,
    depth_factor: float = 2.2,
    stem_width: int = 12,
    bottleneck_factor: float = 2.25,
    se_ratio: float = 0.0625,
    head_width: int = 2048,
    dropout: float = 0.5,
    head_window: tuple[int | None, int, int] | None = None,
) -> nn.Sequential:
    """Build an X3D network; the defaults with ``depth_factor`` 2.2 give X3D-XS/S/M, 5.0 gives X3D-L.

    ``head_window``: (T, H, W) window of the head pool, whose outputs after lin5/ReLU are averaged
    (PyTorchVideo's head); None pools globally."""
    if width_factor <= 0 or depth_factor <= 0:
        raise ValueError(f"width_factor and depth_factor must be positive, got {width_factor}/{depth_factor}")
    stem_out = round_width(stem_width, width_factor)
    stage_dims = [stem_width]
    for _ in range(3):
        stage_dims.append(round_width(stage_dims[-1], 2.0))

    modules: OrderedDict[str, nn.Module] = OrderedDict(stem=_stem(stem_out))
    dim_in = stem_out
    for index, (base_dim, base_depth) in enumerate(zip(stage_dims, STAGE_DEPTHS, strict=True)):
        dim_out = round_width(base_dim, width_factor)
        dim_inner = int(bottleneck_factor * dim_out)
        depth = int(math.ceil(depth_factor * base_depth))
        se_hidden = round_width(dim_inner, se_ratio) if se_ratio > 0 else 0
        modules[f"stage{index + 1}"] = nn.Sequential(
            *(
                _block(
                    dim_in if i == 0 else dim_out,
                    dim_inner,
                    dim_out,
                    spatial_stride=2 if i == 0 else 1,
                    se_hidden=se_hidden if i % 2 == 0 else 0,
                )
                for i in range(depth)
            )
        )
        dim_in = dim_out

    head: OrderedDict[str, nn.Module] = OrderedDict(
        conv5=nn.Conv3d(dim_out, dim_inner, 1, bias=False),
        bn5=_bn(dim_inner),
        relu5=nn.ReLU(),
        pool=GlobalAvgPool3d() if head_window is None else WindowAvgPool3d(head_window),
        lin5=nn.Conv3d(dim_inner, head_width, 1, bias=False),
        relu_lin5=nn.ReLU(),
    )
    if head_window is not None:
        head["window_mean"] = WindowMean()
    head.update(dropout=nn.Dropout(dropout), flatten=Flatten(), fc=nn.Linear(head_width, num_classes))
    modules["head"] = nn.Sequential(head)
    return VideoClassifier(modules, head_start="head.pool", classifier_name="head.fc")


_VARIANTS = (
    # name, frames, sampling rate, train crop, test crop, depth factor
    ("x3d_xs", 4, 12, 160, 182, 2.2),
    ("x3d_s", 13, 6, 160, 182, 2.2),
    ("x3d_m", 16, 5, 224, 256, 2.2),
    ("x3d_l", 16, 5, 312, 356, 5.0),
)

for _name, _frames, _rate, _train, _test, _depth in _VARIANTS:
    register_model(
        ModelConfig(
            name=_name,
            family="x3d",
            builder=x3d,
            frames=_frames,
            sampling_rate=_rate,
            train_crop=_train,
            test_crop=_test,
            builder_kwargs={"depth_factor": _depth, "head_window": (None, *(2 * (-(-_train // 32),)))},
            target_fps=30.0,
            description=(
                f"X3D-{_name[4:].upper()} (Feichtenhofer 2020), PyTorchVideo layout, Kinetics-400; "
                f"{_frames} frames every {_rate} (30 fps timeline), RGB/255 normalised with mean 0.45, std "
                f"0.225; head windows sized for the {_train} px training crop, averaged."
            ),
        )
    )
