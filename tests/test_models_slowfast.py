"""SlowFast-R50 (8x8 and 4x16) against PyTorchVideo's ``create_slowfast``."""

import functools
import warnings

import pytest
import torch
from helpers import calibrate
from torch import nn

from cozoo import registry
from cozoo.layers import blocks, pathways
from cozoo.layers.heads import VideoClassifier
from cozoo.weights.converters import CheckpointMismatchError, convert_state_dict, load_state_dict_strict

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pytorchvideo.models import hub
    from pytorchvideo.models.slowfast import create_slowfast

PUBLISHED_M_PARAMS = {"slowfast_r50": 34.57, "slowfast_r50_4x16": 34.48}
ALPHA = {"slowfast_r50": 4, "slowfast_r50_4x16": 8}
ALLOWED = {VideoClassifier, nn.Sequential, nn.Conv3d, nn.BatchNorm3d, nn.ReLU, nn.MaxPool3d, nn.Dropout,
           nn.Linear, blocks.Residual, blocks.GlobalAvgPool3d, blocks.WindowAvgPool3d, blocks.WindowMean,
           blocks.Flatten, pathways.SplitPathways, pathways.Pathways, pathways.FuseFastToSlow,
           pathways.ConcatPathways}


def pytorchvideo_model(name: str) -> nn.Module:
    if name == "slowfast_r50":
        return hub.slowfast_r50(pretrained=False)
    return create_slowfast(slowfast_fusion_conv_kernel_size=(5, 1, 1), slowfast_fusion_conv_stride=(8, 1, 1),
                           head_pool_kernel_sizes=((4, 7, 7), (32, 7, 7)))


@functools.cache
def reference(name: str) -> tuple[nn.Module, torch.Tensor]:
    """PyTorchVideo model with random weights and statistics, global head pools; and a fast clip."""
    torch.manual_seed(0)
    ref = pytorchvideo_model(name)
    ref.blocks[5].pool = nn.ModuleList([nn.AdaptiveAvgPool3d(1), nn.AdaptiveAvgPool3d(1)])
    fast = torch.randn(2, 3, 16, 64, 64)
    calibrate(ref, [fast[:, :, :: ALPHA[name]], fast])
    return ref, fast


@pytest.mark.parametrize("name", list(PUBLISHED_M_PARAMS))
def test_matches_pytorchvideo(name):
    ref, fast = reference(name)
    model = registry.create_model(name, slow_frames="stride", head_windows=None).eval()
    load_state_dict_strict(model, convert_state_dict("pytorchvideo", "slowfast", ref.state_dict()))
    slow = fast[:, :, :: ALPHA[name]]
    with torch.no_grad():
        expected = ref([slow, fast])  # PyTorchVideo edits its input list in place: pass a fresh one
        from_list, from_clip = model([slow, fast]), model(fast)
    assert from_clip.shape == (2, 400)
    assert expected.std() > 0.1
    assert (from_list - expected).abs().max().item() <= 1e-4
    assert torch.equal(from_clip, from_list)


@pytest.mark.parametrize("name", list(PUBLISHED_M_PARAMS))
def test_param_count_and_module_types(name):
    model = registry.create_model(name)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - PUBLISHED_M_PARAMS[name]) <= 0.005
    assert {type(m) for m in model.modules()} <= ALLOWED
    assert model.fuse0.conv.stride == (ALPHA[name], 1, 1)
    assert registry.get_config(name).frames == 32


def test_split_pathways_samples_every_alpha_frame():
    split = pathways.SplitPathways(4)
    x = torch.randn(1, 3, 10, 4, 4)
    slow, fast = split(x)
    assert torch.equal(slow, x[:, :, ::4]) and fast is x


@pytest.mark.parametrize("bad", [torch.zeros(1, 3, 4, 4), [torch.zeros(1, 3, 1, 4, 4)]])
def test_bad_input_raises(bad):
    with pytest.raises(ValueError, match="expected"):
        pathways.SplitPathways(4)(bad)


def test_converter_strictness():
    state = dict(reference("slowfast_r50")[0].state_dict())
    state["blocks.2.multipathway_blocks.1.res_blocks.0.branch2.conv_q.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"blocks\.2\.multipathway_blocks\.1\.res_blocks\.0"):
        convert_state_dict("pytorchvideo", "slowfast", state)
    del state["blocks.2.multipathway_blocks.1.res_blocks.0.branch2.conv_q.weight"]
    del state["blocks.1.multipathway_fusion.norm.running_var"]
    converted = convert_state_dict("pytorchvideo", "slowfast", state)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): fuse1\.bn\.running_var"):
        load_state_dict_strict(registry.create_model("slowfast_r50"), converted)


def test_8x8_checkpoint_does_not_fit_4x16():
    converted = convert_state_dict("pytorchvideo", "slowfast", reference("slowfast_r50")[0].state_dict())
    with pytest.raises(CheckpointMismatchError, match=r"fuse0\.conv\.weight: checkpoint \(16, 8, 7, 1, 1\)"):
        load_state_dict_strict(registry.create_model("slowfast_r50_4x16"), converted)
