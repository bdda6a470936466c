"""SlowFast-R50 in PyTorchVideo's Kinetics layouts (8x8: alpha 4; 4x16: alpha 8; beta 1/8 in both).

The model is an ``nn.Sequential`` with named children::

    pathways  SplitPathways(alpha)                  clip -> [slow, fast]
    stem      Pathways([slow stem, fast stem])      `cozoo.models.resnet3d.make_stem` each
    fuse0     FuseFastToSlow(conv, bn, activation)  conv (k,1,1), stride (alpha,1,1), padding (k//2,0,0)
    stage1    Pathways([slow stage, fast stage])    `cozoo.models.resnet3d.res_stage` each
    fuse1, stage2, fuse2, stage3, fuse3, stage4
    head      Sequential(pool=Pathways([GlobalAvgPool3d, GlobalAvgPool3d]), concat=ConcatPathways,
                         dropout, flatten=Flatten, fc=Linear)

Slow stages take (1, 1, 3, 3) as conv_a temporal kernels, fast stages 3 everywhere; all temporal strides
are 1. Input: a clip (N, 3, T_fast, H, W) or an explicit list ``[slow, fast]``. From a clip the slow
pathway takes, by default, the publisher's frames ``linspace(0, T - 1, T // alpha)`` truncated
(PySlowFast's ``pack_pathway_output`` and PyTorchVideo's ``PackPathway``: [0, 4, 8, 13, 17, 22, 26, 31]
for 32 frames and alpha 4); ``slow_frames="stride"`` takes ``x[:, :, ::alpha]`` instead, the only choice a
stream has (the continual model's, see `cozoo.continual.multipath.CoSplitPathways`).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cozoo.layers.blocks import Flatten, GlobalAvgPool3d, WindowAvgPool3d, WindowMean
from cozoo.layers.heads import VideoClassifier
from cozoo.layers.pathways import ConcatPathways, FuseFastToSlow, Pathways, SlowFrames, SplitPathways
from cozoo.models.registry import ModelConfig, register_model
from cozoo.models.resnet3d import R50_DEPTHS, make_stem, res_stage

Windows = tuple[tuple[int | None, int, int], tuple[int | None, int, int]]


def _fuse(fast_channels: int, ratio: int, kernel: int, alpha: int) -> FuseFastToSlow:
    conv = nn.Conv3d(fast_channels, fast_channels * ratio, kernel_size=(kernel, 1, 1), stride=(alpha, 1, 1),
                     padding=(kernel // 2, 0, 0), bias=False)
    return FuseFastToSlow(conv, nn.BatchNorm3d(fast_channels * ratio), nn.ReLU())


def create_slowfast(
    *,
    num_classes: int = 400,
    alpha: int = 4,
    beta_inv: int = 8,
    fusion_kernel: int = 7,
    fusion_ratio: int = 2,
    dropout: float = 0.5,
    slow_frames: SlowFrames = "linspace",
    head_windows: Windows | None = None,
) -> nn.Sequential:
    """SlowFast-R50: fast pathway ``beta_inv`` times thinner and ``alpha`` times denser in time.

    ``slow_frames``: how the slow pathway's frames are picked from a clip (see `SplitPathways`).
    ``head_windows``: (T, H, W) average-pool windows of the slow and fast head pools, whose outputs are
    averaged (PyTorchVideo's head, windows sized for the training clip and crop; see
    `cozoo.layers.blocks.WindowAvgPool3d`); None pools globally.
    """
    slow_width = 64
    fast_width = slow_width // beta_inv
    layers: list[tuple[str, nn.Module]] = [
        ("pathways", SplitPathways(alpha, slow_frames)),
        ("stem", Pathways([make_stem(3, slow_width, 1), make_stem(3, fast_width, 5)])),
        ("fuse0", _fuse(fast_width, fusion_ratio, fusion_kernel, alpha)),
    ]
    slow_kernels = ((1,), (1,), (3,), (3,))
    dim_in, dim_inner = slow_width, slow_width
    for i, depth in enumerate(R50_DEPTHS):
        dim_out = dim_inner * 4
        spatial_stride = 1 if i == 0 else 2
        slow = res_stage(depth, dim_in + dim_in * fusion_ratio // beta_inv, dim_inner, dim_out,
                         conv_a_temporal_kernels=slow_kernels[i], spatial_stride=spatial_stride)
        fast = res_stage(depth, dim_in // beta_inv, dim_inner // beta_inv, dim_out // beta_inv,
                         conv_a_temporal_kernels=(3,), spatial_stride=spatial_stride)
        layers.append((f"stage{i + 1}", Pathways([slow, fast])))
        if i < len(R50_DEPTHS) - 1:
            layers.append((f"fuse{i + 1}", _fuse(dim_out // beta_inv, fusion_ratio, fusion_kernel, alpha)))
        dim_in, dim_inner = dim_out, dim_inner * 2
    pools: list[nn.Module] = [GlobalAvgPool3d(), GlobalAvgPool3d()]
    if head_windows is not None:
        pools = [nn.Sequential(OrderedDict(window=WindowAvgPool3d(w), mean=WindowMean()))
                 for w in head_windows]
    layers.append(("head", nn.Sequential(OrderedDict([
        ("pool", Pathways(pools)),
        ("concat", ConcatPathways()),
        ("dropout", nn.Dropout(dropout)),
        ("flatten", Flatten()),
        ("fc", nn.Linear(dim_in + dim_in // beta_inv, num_classes)),
    ]))))
    return VideoClassifier(OrderedDict(layers), head_start="head.pool", classifier_name="head.fc")


def slowfast_r50(num_classes: int = 400, dropout: float = 0.5, slow_frames: SlowFrames = "linspace",
                 head_windows: Windows | None = ((None, 7, 7), (None, 7, 7))) -> nn.Sequential:
    """SlowFast-R50 8x8 (PyTorchVideo ``slowfast_r50``): alpha 4, fusion kernel 7, 34.57M params."""
    return create_slowfast(num_classes=num_classes, alpha=4, fusion_kernel=7, dropout=dropout,
                           slow_frames=slow_frames, head_windows=head_windows)


def slowfast_r50_4x16(num_classes: int = 400, dropout: float = 0.5, slow_frames: SlowFrames = "linspace",
                      head_windows: Windows | None = ((None, 7, 7), (None, 7, 7))) -> nn.Sequential:
    """SlowFast-R50 4x16 (SLOWFAST_4x16_R50): alpha 8, fusion kernel 5, 34.48M params."""
    return create_slowfast(num_classes=num_classes, alpha=8, fusion_kernel=5, dropout=dropout,
                           slow_frames=slow_frames, head_windows=head_windows)


register_model(ModelConfig(
    name="slowfast_r50", family="slowfast", builder=slowfast_r50, frames=32, sampling_rate=2, train_crop=224,
    test_crop=256, target_fps=30.0, description="SlowFast ResNet-50 8x8: 32 fast frames at rate 2 (30 fps "
    "timeline), slow = 8 of them by linspace (PyTorchVideo SLOWFAST_8x8_R50)",
))
register_model(ModelConfig(
    name="slowfast_r50_4x16", family="slowfast", builder=slowfast_r50_4x16, frames=32, sampling_rate=2,
    train_crop=224, test_crop=256, target_fps=30.0, description="SlowFast ResNet-50 4x16: 32 fast frames at "
    "rate 2 (30 fps timeline), slow = 4 of them by linspace (PyTorchVideo SLOWFAST_4x16_R50)",
))
