"""Every continual model: steps == its clip mode; clip mode with source padding == the regular model."""

import pytest
import torch

import cozoo
from cozoo.continual import ContinualModule

CONTINUAL = cozoo.list_models("co*")
FRAME_SIZE = {"coc3d": 112}  # C3D's fc6 fixes its input size


def _randomise_batchnorm(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("name", CONTINUAL)
def test_steps_equal_clip_and_transfer_matches_source(name):
    torch.manual_seed(0)
    config = cozoo.registry.get_config(name)
    model = cozoo.create_model(name, num_classes=5, pool_window=config.frames if "64" not in name else 16)
    assert isinstance(model, ContinualModule)
    _randomise_batchnorm(model)
    model.eval()
    size = FRAME_SIZE.get(name, 32)
    frames = model.first_output + 2 * model.stride + 1
    x = torch.randn(1, 3, frames, size, size)
    with torch.no_grad():
        clip = model(x)
        steps = model.forward_steps(x)
        assert clip.shape[0] == 1 and clip.shape[1] == 5 and clip.shape[2] == 3
        torch.testing.assert_close(steps, clip, rtol=1e-4, atol=1e-4 * clip.abs().max().item())

        source = cozoo.create_model(config.source, num_classes=5)
        source.load_state_dict(model.state_dict())
        source.eval()
        model.set_source_padding(True)
        y = x[:, :, : config.frames] if "64" not in name else x[:, :, :16]
        out = model(y)
        expected = source(y)
        torch.testing.assert_close(out.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "name,receptive_field,padding,delay",
    [("cox3d_s", 69, 28, 40), ("cox3d_m", 72, 28, 43), ("cox3d_l", 130, 57, 72)],
)
def test_cox3d_schedule_matches_co3d_paper(name, receptive_field, padding, delay):
    """Co3D paper: receptive fields 69/72/130, aggregated padding 28/28/57, steady after 40/43/72."""
    model = cozoo.create_model(name)
    assert (model.receptive_field, model.temporal_padding, model.delay) == (receptive_field, padding, delay)


def test_pool_window_keyword_extends_receptive_field_only():
    short, long = cozoo.create_model("cox3d_s"), cozoo.create_model("cox3d_s", pool_window=64)
    assert long.receptive_field - short.receptive_field == 64 - 13
    assert cozoo.create_model("cox3d_s_64").receptive_field == long.receptive_field
