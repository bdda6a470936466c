import pytest
import torch
from helpers import randomise_batchnorm
from pytorchvideo.models import hub
from torch import nn

from cozoo.layers.blocks import Residual, SqueezeExcitation
from cozoo.registry import create_model, get_config
from cozoo.weights.converters import CheckpointMismatchError, convert_state_dict, load_state_dict_strict

VARIANTS = ["x3d_xs", "x3d_s", "x3d_m", "x3d_l"]
PUBLISHED_PARAMS_M = {"x3d_xs": 3.79, "x3d_s": 3.79, "x3d_m": 3.79, "x3d_l": 6.15}


def _reference(name: str) -> nn.Module:
    """PyTorchVideo's hub model with random weights and BN statistics, global pool and no softmax."""
    model = getattr(hub, name)(pretrained=False)
    randomise_batchnorm(model)
    head = model.blocks[5]
    head.pool.pool = nn.AdaptiveAvgPool3d(1)
    head.activation = None
    return model.eval()


@pytest.mark.parametrize("name", VARIANTS)
def test_matches_pytorchvideo_after_conversion(name):
    torch.manual_seed(0)
    reference = _reference(name)
    model = create_model(name, head_window=None).eval()  # global pool, as the reference
    load_state_dict_strict(model, convert_state_dict("pytorchvideo", "x3d", reference.state_dict()))
    clip = torch.randn(2, 3, 5, 64, 48)
    with torch.no_grad():
        expected, got = reference(clip), model(clip)
    assert got.shape == (2, 400)
    assert expected.abs().max() > 1e-2  # a meaningful signal, not all zeros
    assert (got - expected).abs().max() <= 1e-4


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_count_is_published(name):
    count = sum(p.numel() for p in create_model(name).parameters())
    assert abs(count / 1e6 - PUBLISHED_PARAMS_M[name]) < 0.005


def test_configs():
    cfg = get_config("x3d_m")
    assert (cfg.frames, cfg.sampling_rate, cfg.train_crop, cfg.test_crop) == (16, 5, 224, 256)
    assert cfg.mean == (0.45,) * 3 and cfg.std == (0.225,) * 3 and cfg.num_classes == 400
    assert get_config("x3d_l").builder_kwargs["depth_factor"] == 5.0


def test_structure_se_on_every_other_block():
    model = create_model("x3d_xs")
    stage = model.stage3
    assert all(isinstance(block, Residual) for block in stage)
    has_se = [isinstance(getattr(block.branch, "se", None), SqueezeExcitation) for block in stage]
    assert has_se == [True, False] * 5 + [True]
    assert stage[0].branch.se.fc1.out_channels == 16  # pytorchvideo's rounding: round_width(216 * 0.0625)
    assert model.stage1[0].shortcut is not None and not hasattr(model.stage1[0].shortcut, "bn")
    assert model.stage2[1].shortcut is None


def test_converter_reports_missing_and_unknown_keys():
    state = hub.x3d_xs(pretrained=False).state_dict()
    dropped = dict(state)
    del dropped["blocks.2.res_blocks.1.branch2.conv_b.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"stage2\.1\.branch\.conv_b\.weight"):
        load_state_dict_strict(create_model("x3d_xs"), convert_state_dict("pytorchvideo", "x3d", dropped))
    extra = dict(state, **{"blocks.6.extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointMismatchError, match=r"blocks\.6\.extra\.weight"):
        convert_state_dict("pytorchvideo", "x3d", extra)


def test_converter_fills_missing_batchnorm_counters():
    state = {k: v for k, v in hub.x3d_xs(pretrained=False).state_dict().items() if "num_batches" not in k}
    load_state_dict_strict(create_model("x3d_xs"), convert_state_dict("pytorchvideo", "x3d", state))


def test_unmodified_reference_agrees_at_training_crop():
    """At the training crop PyTorchVideo's fixed pool covers the whole map: its softmax equals ours."""
    torch.manual_seed(1)
    reference = hub.x3d_xs(pretrained=False).eval()
    model = create_model("x3d_xs").eval()
    load_state_dict_strict(model, convert_state_dict("pytorchvideo", "x3d", reference.state_dict()))
    clip = torch.randn(1, 3, 4, 160, 160)
    with torch.no_grad():
        assert torch.allclose(model(clip).softmax(dim=1), reference(clip), atol=1e-6)
