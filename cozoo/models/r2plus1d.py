"""R(2+1)D-18 in torchvision's layout (``torchvision.models.video.r2plus1d_18``, 31.51M params).

The model is an ``nn.Sequential`` with named children::

    stem     Sequential(conv=conv2plus1d(3 -> 45 -> 64, spatial 7x7 stride 2, temporal 3), bn, relu)
    stage1 .. stage4   Sequential of blocks.Residual(branch, shortcut, activation=ReLU)
    head     Sequential(pool=GlobalAvgPool3d, dropout (p=0 by default), flatten=Flatten, fc=Linear)

``branch = Sequential(conv_a, bn_a, relu_a, conv_b, bn_b)`` where ``conv_a``/``conv_b`` are
`cozoo.models.resnet3d.conv2plus1d` Sequentials ``(conv_xy, bn, relu, conv_t)`` (spatial first, as in
torchvision). Stages 2-4 stride 2 in time and space in block 0: ``conv_a.conv_xy`` has stride (1, 2, 2),
``conv_a.conv_t`` (2, 1, 1), ``shortcut = Sequential(conv 1x1x1 stride (2, 2, 2), bn)``. Every temporal
conv has kernel 3 and padding 1. The hidden width of block (in, out) is ``27 in out // (9 in + 3 out)``.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cozoo.layers.blocks import Residual
from cozoo.layers.heads import VideoClassifier
from cozoo.models.registry import ModelConfig, register_model
from cozoo.models.resnet3d import classifier_head, conv2plus1d

TORCHVISION_MEAN = (0.43216, 0.394666, 0.37645)
TORCHVISION_STD = (0.22803, 0.22145, 0.216989)


def basic_block(dim_in: int, dim_out: int, stride: int = 1) -> Residual:
    """Two (2+1)D convs with BN; ``stride`` applies to time and space in the first conv."""
    mid = 27 * dim_in * dim_out // (9 * dim_in + 3 * dim_out)
    branch = nn.Sequential(OrderedDict([
        ("conv_a", conv2plus1d(dim_in, mid, dim_out, temporal_stride=stride, spatial_stride=stride)),
        ("bn_a", nn.BatchNorm3d(dim_out)),
        ("relu_a", nn.ReLU()),
        ("conv_b", conv2plus1d(dim_out, mid, dim_out)),
        ("bn_b", nn.BatchNorm3d(dim_out)),
    ]))
    shortcut = None
    if stride != 1 or dim_in != dim_out:
        shortcut = nn.Sequential(OrderedDict([
            ("conv", nn.Conv3d(dim_in, dim_out, kernel_size=1, stride=stride, bias=False)),
            ("bn", nn.BatchNorm3d(dim_out)),
        ]))
    return Residual(branch, shortcut, nn.ReLU())


def r2plus1d_18(num_classes: int = 400, dropout: float = 0.0) -> nn.Sequential:
    """torchvision's R(2+1)D-18 (two basic blocks per stage, widths 64-128-256-512)."""
    layers: list[tuple[str, nn.Module]] = [("stem", nn.Sequential(OrderedDict([
        ("conv", conv2plus1d(3, 45, 64, spatial_kernel=7, spatial_stride=2)),
        ("bn", nn.BatchNorm3d(64)),
        ("relu", nn.ReLU()),
    ])))]
    dim_in = 64
    for i, dim_out in enumerate((64, 128, 256, 512)):
        stride = 1 if i == 0 else 2
        layers.append((f"stage{i + 1}", nn.Sequential(basic_block(dim_in, dim_out, stride),
                                                      basic_block(dim_out, dim_out))))
        dim_in = dim_out
    layers.append(("head", classifier_head(dim_in, num_classes, dropout)))
    return VideoClassifier(OrderedDict(layers), head_start="head.pool", classifier_name="head.fc")


# torchvision's recipe (references/video_classification): videos resampled to 15 fps, clips of consecutive
# frames on that timeline, every frame resized to 128x171 (aspect not kept), centre crop 112 with its
# offset rounded half to even (torchvision's center_crop). The 8-frame config is the Co3D benchmark's clip.
for _name, _frames in (("r2plus1d_18", 16), ("r2plus1d_18_8f", 8)):
    register_model(ModelConfig(
        name=_name, family="r2plus1d", builder=r2plus1d_18, frames=_frames, sampling_rate=1, train_crop=112,
        test_crop=112, mean=TORCHVISION_MEAN, std=TORCHVISION_STD,
        description=f"R(2+1)D-18 (torchvision r2plus1d_18), {_frames} frames at 15 fps, resize 128x171, "
                    "crop 112",
        test_short_side=128, test_resize=(128, 171), crop_rounding="round", target_fps=15.0,
    ))
