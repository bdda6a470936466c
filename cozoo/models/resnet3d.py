"""3D ResNet-50 family in PyTorchVideo's Kinetics layouts: I3D-R50, Slow-R50 and R(2+1)D-R50.

Every model is a plain ``nn.Sequential`` with named children::

    stem         Sequential(conv, bn, relu[, pool])
    stage1       Sequential of blocks.Residual, one per bottleneck
    stage1_pool  MaxPool3d((2, 1, 1), stride (2, 1, 1))      (I3D only)
    stage2 .. stage4
    head         Sequential(pool=GlobalAvgPool3d, dropout, flatten=Flatten, fc=Linear)

A bottleneck is ``Residual(branch, shortcut, activation=ReLU)`` with
``branch = Sequential(conv_a, bn_a, relu_a, conv_b, bn_b, relu_b, conv_c, bn_c)`` and
``shortcut = Sequential(conv, bn)`` (1x1x1, strided) or ``None``. ``conv_a`` is (kt, 1, 1) and carries
the stage's temporal stride; ``conv_b`` is either a (1, 3, 3) conv carrying the spatial stride or, in
R(2+1)D, a `conv2plus1d` Sequential (conv_t, bn, relu, conv_xy) carrying both strides.
BatchNorm uses eps 1e-5, momentum 0.1; no conv has a bias.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

from torch import nn

from cozoo.layers.blocks import Flatten, GlobalAvgPool3d, Residual, WindowAvgPool3d, WindowMean
from cozoo.layers.heads import VideoClassifier
from cozoo.models.registry import ModelConfig, register_model

ConvB = Literal["3d", "2plus1d"]
R50_DEPTHS = (3, 4, 6, 3)


def conv2plus1d(
    in_channels: int,
    mid_channels: int,
    out_channels: int,
    *,
    temporal_kernel: int = 3,
    spatial_kernel: int = 3,
    temporal_stride: int = 1,
    spatial_stride: int = 1,
    spatial_first: bool = True,
) -> nn.Sequential:
    """(2+1)D factorised conv with BN+ReLU between its two convs; padding keeps size at stride 1.

    ``spatial_first=True`` gives ``Sequential(conv_xy, bn, relu, conv_t)`` (torchvision's R(2+1)D);
    ``False`` gives ``Sequential(conv_t, bn, relu, conv_xy)`` (PyTorchVideo's R(2+1)D-R50).
    """
    conv_xy_in, conv_t_in = (in_channels, mid_channels) if spatial_first else (mid_channels, in_channels)
    conv_xy_out, conv_t_out = (mid_channels, out_channels) if spatial_first else (out_channels, mid_channels)
    conv_xy = nn.Conv3d(
        conv_xy_in, conv_xy_out, kernel_size=(1, spatial_kernel, spatial_kernel),
        stride=(1, spatial_stride, spatial_stride), padding=(0, spatial_kernel // 2, spatial_kernel // 2),
        bias=False,
    )
    conv_t = nn.Conv3d(
        conv_t_in, conv_t_out, kernel_size=(temporal_kernel, 1, 1), stride=(temporal_stride, 1, 1),
        padding=(temporal_kernel // 2, 0, 0), bias=False,
    )
    first, second = (("conv_xy", conv_xy), ("conv_t", conv_t)) if spatial_first else (
        ("conv_t", conv_t), ("conv_xy", conv_xy))
    middle = [("bn", nn.BatchNorm3d(mid_channels)), ("relu", nn.ReLU())]
    return nn.Sequential(OrderedDict([first, *middle, second]))


def make_stem(in_channels: int, out_channels: int, temporal_kernel: int, pool: bool = True) -> nn.Sequential:
    """(kt, 7, 7) conv, stride (1, 2, 2), BN, ReLU, optionally a (1, 3, 3) max-pool with stride (1, 2, 2)."""
    layers: list[tuple[str, nn.Module]] = [
        ("conv", nn.Conv3d(in_channels, out_channels, kernel_size=(temporal_kernel, 7, 7), stride=(1, 2, 2),
                           padding=(temporal_kernel // 2, 3, 3), bias=False)),
        ("bn", nn.BatchNorm3d(out_channels)),
        ("relu", nn.ReLU()),
    ]
    if pool:
        layers.append(("pool", nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))))
    return nn.Sequential(OrderedDict(layers))


def bottleneck(
    dim_in: int,
    dim_inner: int,
    dim_out: int,
    *,
    conv_a_temporal_kernel: int,
    temporal_stride: int = 1,
    spatial_stride: int = 1,
    conv_b: ConvB = "3d",
) -> Residual:
    """ResNet bottleneck (see the module docstring for its layout and where the strides sit)."""
    kt = conv_a_temporal_kernel
    if conv_b == "3d":
        conv_a_stride = temporal_stride
        conv_b_module: nn.Module = nn.Conv3d(
            dim_inner, dim_inner, kernel_size=(1, 3, 3), stride=(1, spatial_stride, spatial_stride),
            padding=(0, 1, 1), bias=False,
        )
    elif conv_b == "2plus1d":
        conv_a_stride = 1
        conv_b_module = conv2plus1d(
            dim_inner, dim_inner, dim_inner, temporal_stride=temporal_stride, spatial_stride=spatial_stride,
            spatial_first=False,
        )
    else:
        raise ValueError(f"conv_b must be '3d' or '2plus1d', got {conv_b!r}")
    branch = nn.Sequential(OrderedDict([
        ("conv_a", nn.Conv3d(dim_in, dim_inner, kernel_size=(kt, 1, 1), stride=(conv_a_stride, 1, 1),
                             padding=(kt // 2, 0, 0), bias=False)),
        ("bn_a", nn.BatchNorm3d(dim_inner)),
        ("relu_a", nn.ReLU()),
        ("conv_b", conv_b_module),
        ("bn_b", nn.BatchNorm3d(dim_inner)),
        ("relu_b", nn.ReLU()),
        ("conv_c", nn.Conv3d(dim_inner, dim_out, kernel_size=1, bias=False)),
        ("bn_c", nn.BatchNorm3d(dim_out)),
    ]))
    shortcut = None
    if dim_in != dim_out or temporal_stride != 1 or spatial_stride != 1:
        shortcut = nn.Sequential(OrderedDict([
            ("conv", nn.Conv3d(dim_in, dim_out, kernel_size=1, stride=(temporal_stride, spatial_stride,
                                                                      spatial_stride), bias=False)),
            ("bn", nn.BatchNorm3d(dim_out)),
        ]))
    return Residual(branch, shortcut, nn.ReLU())


def res_stage(
    depth: int,
    dim_in: int,
    dim_inner: int,
    dim_out: int,
    *,
    conv_a_temporal_kernels: Sequence[int],
    temporal_stride: int = 1,
    spatial_stride: int = 1,
    conv_b: ConvB = "3d",
) -> nn.Sequential:
    """``depth`` bottlenecks; block i uses ``conv_a_temporal_kernels[i % len]``; only block 0 strides."""
    return nn.Sequential(*(
        bottleneck(
            dim_in if i == 0 else dim_out, dim_inner, dim_out,
            conv_a_temporal_kernel=conv_a_temporal_kernels[i % len(conv_a_temporal_kernels)],
            temporal_stride=temporal_stride if i == 0 else 1,
            spatial_stride=spatial_stride if i == 0 else 1,
            conv_b=conv_b,
        )
        for i in range(depth)
    ))


def classifier_head(
    in_features: int, num_classes: int, dropout: float, window: tuple[int | None, int, int] | None = None
) -> nn.Sequential:
    """Average pool over (T, H, W), dropout, flatten, linear -> logits. The pool is global, or with
    ``window`` the mean of the averages over every (T, H, W) box at stride 1 (PyTorchVideo's head pool,
    sized for the training clip and crop; its per-box fc then average equals this, fc being linear)."""
    pool: nn.Module = GlobalAvgPool3d()
    if window is not None:
        pool = nn.Sequential(OrderedDict(window=WindowAvgPool3d(window), mean=WindowMean()))
    return nn.Sequential(OrderedDict([
        ("pool", pool),
        ("dropout", nn.Dropout(dropout)),
        ("flatten", Flatten()),
        ("fc", nn.Linear(in_features, num_classes)),
    ]))


def create_resnet3d(
    *,
    num_classes: int = 400,
    stem_temporal_kernel: int,
    conv_a_temporal_kernels: Sequence[Sequence[int]],
    conv_b: ConvB = "3d",
    stem_pool: bool = True,
    stage1_pool: bool = False,
    temporal_strides: Sequence[int] = (1, 1, 1, 1),
    spatial_strides: Sequence[int] = (1, 2, 2, 2),
    depths: Sequence[int] = R50_DEPTHS,
    stem_width: int = 64,
    dropout: float = 0.5,
    head_window: tuple[int | None, int, int] | None = None,
) -> nn.Sequential:
    """A bottleneck 3D ResNet; per-stage arguments are sequences of four (one per stage). ``head_window``:
    see `classifier_head`."""
    for arg_name, value in (("conv_a_temporal_kernels", conv_a_temporal_kernels), ("depths", depths),
                            ("temporal_strides", temporal_strides), ("spatial_strides", spatial_strides)):
        if len(value) != 4:
            raise ValueError(f"{arg_name} needs one entry per stage (4), got {len(value)}")
    stem = make_stem(3, stem_width, stem_temporal_kernel, stem_pool)
    layers: list[tuple[str, nn.Module]] = [("stem", stem)]
    dim_in, dim_inner = stem_width, stem_width
    for i in range(4):
        layers.append((f"stage{i + 1}", res_stage(
            depths[i], dim_in, dim_inner, dim_inner * 4, conv_a_temporal_kernels=conv_a_temporal_kernels[i],
            temporal_stride=temporal_strides[i], spatial_stride=spatial_strides[i], conv_b=conv_b,
        )))
        if i == 0 and stage1_pool:
            layers.append(("stage1_pool", nn.MaxPool3d(kernel_size=(2, 1, 1), stride=(2, 1, 1))))
        dim_in, dim_inner = dim_inner * 4, dim_inner * 2
    layers.append(("head", classifier_head(dim_in, num_classes, dropout, head_window)))
    return VideoClassifier(OrderedDict(layers), head_start="head.pool", classifier_name="head.fc")


# PyTorchVideo's hub head pools: (T, 7, 7) for the 224 px training crop, T the clip length at the head
# (None here: the whole clip, which is T at the registered clip length).
Window = tuple[int | None, int, int] | None


def i3d_r50(
    num_classes: int = 400, dropout: float = 0.5, head_window: Window = (None, 7, 7)
) -> nn.Sequential:
    """I3D-R50 (PyTorchVideo ``i3d_r50``): 5x7x7 stem, temporal max-pool after stage 1, 28.04M params."""
    return create_resnet3d(
        num_classes=num_classes, stem_temporal_kernel=5, stage1_pool=True,
        conv_a_temporal_kernels=((3,), (3, 1), (3, 1), (1, 3)), dropout=dropout, head_window=head_window,
    )


def slow_r50(
    num_classes: int = 400, dropout: float = 0.5, head_window: Window = (None, 7, 7)
) -> nn.Sequential:
    """Slow-R50 (PyTorchVideo ``slow_r50``): 1x7x7 stem, temporal convs in stages 3-4, 32.45M params."""
    return create_resnet3d(
        num_classes=num_classes, stem_temporal_kernel=1,
        conv_a_temporal_kernels=((1,), (1,), (3,), (3,)), dropout=dropout, head_window=head_window,
    )


def r2plus1d_r50(
    num_classes: int = 400, dropout: float = 0.5, head_window: Window = (None, 7, 7)
) -> nn.Sequential:
    """R(2+1)D-R50 (PyTorchVideo ``r2plus1d_r50``): no stem pool, (2+1)D conv_b, 28.11M params.

    Spatial stride 2 in every stage, temporal stride 2 in stages 3 and 4 (on ``conv_b.conv_t``).
    """
    return create_resnet3d(
        num_classes=num_classes, stem_temporal_kernel=1, stem_pool=False, conv_b="2plus1d",
        conv_a_temporal_kernels=((1,), (1,), (1,), (1,)), temporal_strides=(1, 1, 2, 2),
        spatial_strides=(2, 2, 2, 2), dropout=dropout, head_window=head_window,
    )


register_model(ModelConfig(
    name="i3d_r50", family="resnet3d", target_fps=30.0,
    builder=i3d_r50, frames=8, sampling_rate=8, train_crop=224,
    test_crop=256, description="I3D ResNet-50, 8x8 (PyTorchVideo I3D_8x8_R50)",
))
register_model(ModelConfig(
    name="slow_r50", family="resnet3d", target_fps=30.0,
    builder=slow_r50, frames=8, sampling_rate=8, train_crop=224,
    test_crop=256, description="Slow-only ResNet-50, 8x8 (PyTorchVideo SLOW_8x8_R50)",
))
register_model(ModelConfig(
    name="r2plus1d_r50", family="resnet3d", target_fps=30.0,
    builder=r2plus1d_r50, frames=16, sampling_rate=4, train_crop=224,
    test_crop=256, description="R(2+1)D ResNet-50, 16x4 (PyTorchVideo R2PLUS1D_16x4_R50)",
))
