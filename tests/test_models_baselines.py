import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cozoo.layers.recurrent import FrameLSTM
from cozoo.models.baselines import cnn_lstm, early_fusion, late_fusion
from cozoo.registry import create_model, get_config

TINY = (4, 8)


def _randomise_bn(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("name", ["late_fusion", "early_fusion", "cnn_lstm"])
def test_registered_shapes(name):
    torch.manual_seed(0)
    cfg = get_config(name)
    assert (cfg.frames, cfg.train_crop) == (8, 112)
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, cfg.frames, 112, 112))
    assert out.shape == (2, 10)


def test_many_to_many_shape_and_last_step_equals_many_to_one():
    torch.manual_seed(0)
    many = _randomise_bn(cnn_lstm(num_classes=5, widths=TINY, hidden_size=6, many_to_many=True))
    one = cnn_lstm(num_classes=5, widths=TINY, hidden_size=6).eval()
    state = {k.replace("head.module.", ""): v for k, v in many.state_dict().items()}
    one.load_state_dict(state, strict=True)
    clip = torch.randn(2, 3, 7, 32, 32)
    with torch.no_grad():
        per_step, last = many(clip), one(clip)
    assert per_step.shape == (2, 5, 7) and last.shape == (2, 5)
    torch.testing.assert_close(last, per_step[:, :, -1], rtol=0, atol=1e-6)


def test_cnn_lstm_is_causal():
    torch.manual_seed(0)
    model = _randomise_bn(cnn_lstm(num_classes=5, widths=TINY, hidden_size=6, many_to_many=True))
    clip = torch.randn(1, 3, 6, 32, 32)
    with torch.no_grad():
        full, prefix = model(clip), model(clip[:, :, :4])
        changed_future = model(torch.cat([clip[:, :, :4], torch.randn(1, 3, 2, 32, 32)], dim=2))
    torch.testing.assert_close(full[:, :, :4], prefix, rtol=0, atol=1e-6)
    torch.testing.assert_close(changed_future[:, :, :4], prefix, rtol=0, atol=1e-6)
    assert not torch.allclose(full[:, :, 4:], changed_future[:, :, 4:])


def test_early_fusion_first_conv_is_2d_conv_over_stacked_frames():
    torch.manual_seed(0)
    frames = 5
    conv = early_fusion(frames=frames, widths=TINY).trunk.layer1.conv
    clip = torch.randn(2, 3, frames, 24, 20)
    stacked = clip.reshape(2, 3 * frames, 24, 20)  # channel c, frame t -> channel c * T + t
    weight_2d = conv.weight.reshape(conv.out_channels, 3 * frames, *conv.kernel_size[1:])
    expected = F.conv2d(stacked, weight_2d, stride=conv.stride[1:], padding=conv.padding[1:])
    with torch.no_grad():
        got = conv(clip)
    assert got.shape == (2, TINY[0], 1, 12, 10)
    torch.testing.assert_close(got[:, :, 0], expected, rtol=0, atol=1e-5)


def test_late_fusion_is_frame_order_invariant_and_averages_frame_logits():
    torch.manual_seed(0)
    model = _randomise_bn(late_fusion(num_classes=7, widths=TINY))
    clip = torch.randn(2, 3, 6, 32, 32)
    with torch.no_grad():
        out = model(clip)
        shuffled = model(clip[:, :, torch.randperm(6)])
        per_frame = torch.stack([model(clip[:, :, t : t + 1]) for t in range(6)]).mean(0)
    assert out.shape == (2, 7)
    assert out.std() > 1e-3
    torch.testing.assert_close(shuffled, out, rtol=0, atol=1e-5)
    torch.testing.assert_close(per_frame, out, rtol=0, atol=1e-5)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="FrameLSTM expects"):
        FrameLSTM(4, 3)(torch.randn(1, 4, 5, 2, 2))
    with pytest.raises(ValueError, match="widths"):
        late_fusion(widths=())
    with pytest.raises(ValueError, match="frames"):
        early_fusion(frames=0)
