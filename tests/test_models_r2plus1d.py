"""R(2+1)D-18 against ``torchvision.models.video.r2plus1d_18``."""

import functools

import pytest
import torch
from helpers import calibrate
from torch import nn
from torchvision.models.video import r2plus1d_18

from cozoo import registry
from cozoo.layers import blocks
from cozoo.layers.heads import VideoClassifier
from cozoo.weights.converters import CheckpointMismatchError, convert_state_dict, load_state_dict_strict

ALLOWED = {VideoClassifier, nn.Sequential, nn.Conv3d, nn.BatchNorm3d, nn.ReLU, nn.Dropout, nn.Linear,
           blocks.Residual, blocks.GlobalAvgPool3d, blocks.Flatten}


@functools.cache
def reference() -> tuple[nn.Module, torch.Tensor]:
    """torchvision model with random BN affine/fc weights and BN statistics of the test clip."""
    torch.manual_seed(0)
    ref = r2plus1d_18(weights=None)
    x = torch.randn(2, 3, 8, 64, 64)
    return calibrate(ref, x), x


@pytest.mark.parametrize("name", ["r2plus1d_18", "r2plus1d_18_8f"])
def test_matches_torchvision(name):
    ref, x = reference()
    model = registry.create_model(name).eval()
    load_state_dict_strict(model, convert_state_dict("torchvision", "r2plus1d", ref.state_dict()))
    with torch.no_grad():
        expected, got = ref(x), model(x)
    assert got.shape == (2, 400)
    assert expected.std() > 0.1
    assert (got - expected).abs().max().item() <= 1e-4


def test_param_count_module_types_and_config():
    model = registry.create_model("r2plus1d_18")
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference()[0].parameters())
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - 31.51) <= 0.005
    assert {type(m) for m in model.modules()} <= ALLOWED
    assert model.stage2[0].branch.conv_a.conv_t.stride == (2, 1, 1)
    config = registry.get_config("r2plus1d_18")
    assert (config.frames, config.test_crop, config.mean) == (16, 112, (0.43216, 0.394666, 0.37645))
    assert registry.get_config("r2plus1d_18_8f").frames == 8


def test_converter_strictness():
    state = dict(reference()[0].state_dict())
    state["layer5.0.conv1.0.0.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"layer5\.0\.conv1\.0\.0\.weight"):
        convert_state_dict("torchvision", "r2plus1d", state)
    del state["layer5.0.conv1.0.0.weight"]
    del state["layer3.0.downsample.1.running_mean"]
    converted = convert_state_dict("torchvision", "r2plus1d", state)
    missing = r"missing keys \(1\): stage3\.0\.shortcut\.bn\.running_mean"
    with pytest.raises(CheckpointMismatchError, match=missing):
        load_state_dict_strict(registry.create_model("r2plus1d_18"), converted)
