"""I3D-R50, Slow-R50 and R(2+1)D-R50 against PyTorchVideo's reference builders."""

import functools
import warnings

import pytest
import torch
from helpers import calibrate
from torch import nn

from cozoo import registry
from cozoo.layers import blocks
from cozoo.layers.heads import VideoClassifier
from cozoo.weights.converters import CheckpointMismatchError, convert_state_dict, load_state_dict_strict

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pytorchvideo.models import hub

PUBLISHED_M_PARAMS = {"i3d_r50": 28.04, "slow_r50": 32.45, "r2plus1d_r50": 28.11}
# Frames for the reduced-size check; R(2+1)D halves time in stages 3 and 4.
TEST_FRAMES = {"i3d_r50": 8, "slow_r50": 8, "r2plus1d_r50": 8}
ALLOWED = {VideoClassifier, nn.Sequential, nn.Conv3d, nn.BatchNorm3d, nn.ReLU, nn.MaxPool3d, nn.Dropout,
           nn.Linear, blocks.Residual, blocks.GlobalAvgPool3d, blocks.WindowAvgPool3d, blocks.WindowMean,
           blocks.Flatten}


@functools.cache
def reference(name: str) -> tuple[nn.Module, torch.Tensor]:
    """PyTorchVideo model with random weights and statistics, global head pool, no head activation."""
    torch.manual_seed(0)
    ref = getattr(hub, name)(pretrained=False)
    head = ref.blocks[-1]
    head.pool, head.activation = nn.AdaptiveAvgPool3d(1), None
    x = torch.randn(2, 3, TEST_FRAMES[name], 64, 64)
    calibrate(ref, x)
    return ref, x


@pytest.mark.parametrize("name", list(PUBLISHED_M_PARAMS))
def test_matches_pytorchvideo(name):
    ref, x = reference(name)
    model = registry.create_model(name, head_window=None).eval()  # global pool, as the reference
    load_state_dict_strict(model, convert_state_dict("pytorchvideo", "resnet3d", ref.state_dict()))
    with torch.no_grad():
        expected, got = ref(x), model(x)
    assert got.shape == (2, 400)
    assert expected.std() > 0.1  # a meaningful signal, not near-zero logits
    assert (got - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", list(PUBLISHED_M_PARAMS))
def test_param_count_and_module_types(name):
    model = registry.create_model(name)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - PUBLISHED_M_PARAMS[name]) <= 0.005
    assert {type(m) for m in model.modules()} <= ALLOWED


def test_i3d_layout():
    model = registry.create_model("i3d_r50")
    assert model.stem.conv.kernel_size == (5, 7, 7) and model.stem.conv.padding == (2, 3, 3)
    assert model.stage1_pool.kernel_size == (2, 1, 1) and model.stage1_pool.stride == (2, 1, 1)
    assert [blk.branch.conv_a.kernel_size[0] for blk in model.stage4] == [1, 3, 1]


def test_converter_rejects_unknown_key():
    state = dict(reference("slow_r50")[0].state_dict())
    state["blocks.2.res_blocks.1.branch2.conv_z.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"blocks\.2\.res_blocks\.1\.branch2\.conv_z\.weight"):
        convert_state_dict("pytorchvideo", "resnet3d", state)


def test_missing_key_is_named():
    state = dict(reference("slow_r50")[0].state_dict())
    del state["blocks.1.res_blocks.0.branch2.conv_a.weight"]
    converted = convert_state_dict("pytorchvideo", "resnet3d", state)
    missing = r"missing keys \(1\): stage1\.0\.branch\.conv_a\.weight"
    with pytest.raises(CheckpointMismatchError, match=missing):
        load_state_dict_strict(registry.create_model("slow_r50"), converted)


def test_wrong_variant_checkpoint_is_rejected():
    converted = convert_state_dict("pytorchvideo", "resnet3d", reference("slow_r50")[0].state_dict())
    with pytest.raises(CheckpointMismatchError, match=r"stem\.conv\.weight: checkpoint \(64, 3, 1, 7, 7\)"):
        load_state_dict_strict(registry.create_model("i3d_r50"), converted)
