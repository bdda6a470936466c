"""Multi-rate pathways (SlowFast-style): slow pathway every alpha-th frame, aligned lateral fusion."""

import pytest
import torch
from torch import nn

from cozoo.continual import CoSplitPathways, to_continual
from cozoo.layers.blocks import Flatten, GlobalAvgPool3d, Residual
from cozoo.layers.pathways import ConcatPathways, FuseFastToSlow, Pathways, SplitPathways


def _tiny_slowfast(alpha: int, fusion_kernel: int) -> nn.Sequential:
    def conv(c_in: int, c_out: int, k: int) -> nn.Conv3d:
        return nn.Conv3d(c_in, c_out, (k, 3, 3), padding=(k // 2, 1, 1))

    def fuse(c: int) -> FuseFastToSlow:
        lateral = nn.Conv3d(
            c, 2 * c, (fusion_kernel, 1, 1), stride=(alpha, 1, 1), padding=(fusion_kernel // 2, 0, 0)
        )
        return FuseFastToSlow(lateral, nn.BatchNorm3d(2 * c), nn.ReLU())

    slow_block = Residual(nn.Sequential(conv(6, 6, 3), nn.ReLU(), conv(6, 6, 1)), None, nn.ReLU())
    fast_block = Residual(nn.Sequential(conv(2, 2, 3), nn.ReLU(), conv(2, 2, 3)), None, nn.ReLU())
    return nn.Sequential(
        SplitPathways(alpha),
        Pathways([conv(3, 2, 1), conv(3, 2, 5)]),
        fuse(2),
        Pathways([slow_block, fast_block]),
        nn.Sequential(
            Pathways([GlobalAvgPool3d(), GlobalAvgPool3d()]), ConcatPathways(), Flatten(), nn.Linear(8, 4)
        ),
    )


@pytest.mark.parametrize("alpha,fusion_kernel", [(2, 3), (4, 7), (8, 5)])
def test_slowfast_steps_equal_clip_and_source(alpha, fusion_kernel):
    torch.manual_seed(alpha)
    net = _tiny_slowfast(alpha, fusion_kernel).eval()
    co = to_continual(net, pool_window=4 * alpha).eval()
    x = torch.randn(2, 3, co.first_output + 5 * alpha, 4, 4)
    with torch.no_grad():
        clip, steps = co(x), co.forward_steps(x)
        assert clip.shape == (2, 4, 5)
        torch.testing.assert_close(steps, clip, rtol=1e-5, atol=1e-6)
        co.set_source_padding(True)
        y = x[:, :, : 4 * alpha]
        torch.testing.assert_close(co(y).flatten(1), net(y), rtol=1e-5, atol=1e-6)


def test_slow_pathway_sees_every_alpha_th_frame():
    split = to_continual(SplitPathways(4))
    assert isinstance(split, CoSplitPathways)
    slow_steps = [t for t in range(12) if split.forward_step(torch.randn(1, 3, 2, 2))[0] is not None]
    assert slow_steps == [0, 4, 8]


def test_outputs_every_alpha_frames_after_warm_up():
    torch.manual_seed(0)
    co = to_continual(_tiny_slowfast(4, 7), pool_window=16).eval()
    with torch.no_grad():
        emitted = [
            t for t in range(co.first_output + 20) if co.forward_step(torch.randn(1, 3, 4, 4)) is not None
        ]
    assert emitted[0] == co.first_output
    assert all(b - a == 4 for a, b in zip(emitted, emitted[1:], strict=False))
