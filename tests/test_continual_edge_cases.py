"""What a converted model must not silently get wrong: autograd through steps, pickling, conversion of
layers it cannot honour, state that outlives a change of weights, window or mode."""

from __future__ import annotations

import io
import pickle
import warnings

import pytest
import torch
from torch import nn

import cozoo
from cozoo import fuse_conv_bn
from cozoo.continual import CoGlobalAvgPool3d, StreamError, configure_pool_window, to_continual


def _chain(cache: str = "auto") -> nn.Module:
    torch.manual_seed(0)
    source = nn.Sequential(
        nn.Conv3d(2, 3, (3, 3, 3), padding=(1, 1, 1)), nn.BatchNorm3d(3), nn.ReLU(),
        nn.Conv3d(3, 2, (2, 1, 1)), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(2, 4),
    )
    for module in source.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return to_continual(source.eval(), pool_window=3, cache=cache).double()


def _lstm_net() -> nn.Module:
    torch.manual_seed(0)
    return cozoo.create_model("cnn_lstm", num_classes=3, widths=(4, 8), hidden_size=6).double().eval()


@pytest.mark.parametrize("cache", ["pre", "post", "lstm"])
def test_gradients_through_steps_equal_clip_gradients(cache: str) -> None:
    co = to_continual(_lstm_net()) if cache == "lstm" else _chain(cache)
    x = torch.randn(1, 3, 5, 16, 16) if cache == "lstm" else torch.randn(1, 2, 9, 4, 4)
    x = x.double()
    co(x).sum().backward()
    clip_grads = [p.grad.clone() for p in co.parameters()]
    co.zero_grad()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the eval-mode-with-gradients warning, tested below
        co.forward_steps(x).sum().backward()
    for p, expected in zip(co.parameters(), clip_grads, strict=True):
        torch.testing.assert_close(p.grad, expected)


def test_stepping_eval_model_with_gradients_warns_once_per_stream() -> None:
    co = _chain()
    frame = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    with pytest.warns(UserWarning, match="no_grad"):
        co.forward_step(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        co.forward_step(frame)  # same stream: no repeat
        co.reset()
        with torch.no_grad():
            co.forward_step(frame)


def test_softmax_converts_on_the_class_axis_only() -> None:
    torch.manual_seed(0)
    source = nn.Sequential(nn.Conv3d(2, 5, (2, 1, 1)), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(5, 3),
                           nn.Softmax(dim=1)).eval()
    co = to_continual(source, pool_window=1)
    x = torch.randn(1, 2, 4, 3, 3)
    with torch.no_grad():
        expected = torch.stack([source(x[:, :, t : t + 2]) for t in range(3)], dim=2)
        torch.testing.assert_close(co(x), expected)
        torch.testing.assert_close(co.forward_steps(x), expected)
    for layer in (nn.Softmax(dim=-1), nn.Softmax(), nn.LogSoftmax(dim=2)):
        with pytest.raises(TypeError, match="dim=1"):
            to_continual(nn.Sequential(nn.Linear(2, 2), layer))


def test_continual_models_pickle_mid_stream() -> None:
    co = _chain()
    x = torch.randn(1, 2, 10, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        co.forward_steps(x[:, :, :5])
        buffer = io.BytesIO()
        torch.save(co, buffer)
        copy = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
        assert type(copy[1]) is type(co[1])  # the generated per-frame class, e.g. CoBatchNorm3d
        torch.testing.assert_close(copy.forward_steps(x[:, :, 5:]), co.forward_steps(x[:, :, 5:]))
    assert pickle.loads(pickle.dumps(co[2])).inplace == co[2].inplace


def test_subclasses_that_change_a_layer_and_parametrised_or_hooked_layers_are_refused() -> None:
    class Standardised(nn.Conv3d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2

    class Plain(nn.Conv3d):
        pass

    with pytest.raises(TypeError, match="no continual counterpart for .*Standardised"):
        to_continual(Standardised(1, 1, 1))
    assert to_continual(Plain(1, 1, 1)).kernel_t == 1
    with pytest.raises(TypeError, match="remove_parametrizations"):
        to_continual(nn.utils.parametrizations.weight_norm(nn.Conv3d(1, 1, 1)))
    hooked = nn.Conv3d(1, 1, 1)
    hooked.register_forward_hook(lambda module, inputs, output: output * 2)
    with pytest.raises(TypeError, match="hooks"):
        to_continual(hooked)
    with pytest.raises(TypeError, match="track_running_stats"):
        to_continual(nn.BatchNorm3d(2, track_running_stats=False))


def test_conversion_keeps_the_training_flag_and_validates_arguments() -> None:
    source = nn.Sequential(nn.Conv3d(2, 2, 1), nn.ReLU())
    assert not any(m.training for m in to_continual(source.eval()).modules())
    assert all(m.training for m in to_continual(source.train()).modules())
    with pytest.raises(ValueError, match="cache must be"):
        to_continual(nn.ReLU(), cache="bad")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive int"):
        CoGlobalAvgPool3d(True)  # type: ignore[arg-type]


def test_weight_edited_through_data_is_used_after_reset() -> None:
    co = _chain("post")
    x = torch.randn(1, 2, 8, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        co.forward_steps(x)
        co[0].weight.data.mul_(3.0)  # bypasses the version counter the cached relayout is keyed on
        co.reset()
        torch.testing.assert_close(co.forward_steps(x), co(x))


def test_weight_layout_cached_in_inference_mode_is_usable_with_autograd() -> None:
    co = _chain("post").requires_grad_(False)
    x = torch.randn(1, 2, 8, 4, 4, dtype=torch.float64)
    with torch.inference_mode():
        co[0]._derived_weight("post")  # cached as an inference tensor
    frames = x.clone().requires_grad_(True)  # same stream, no reset: the cache is still there
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        co.forward_steps(frames).sum().backward()
    assert frames.grad is not None


def test_fusing_mid_stream_gives_a_fresh_stream() -> None:
    co = _chain("post")
    with torch.no_grad():
        co.forward_steps(torch.randn(1, 2, 5, 4, 4, dtype=torch.float64))
        fused = fuse_conv_bn(co)
        assert not fused.in_stream
        x = torch.randn(1, 2, 8, 4, 4, dtype=torch.float64)
        torch.testing.assert_close(fused.forward_steps(x), co(x))


def test_changing_the_pool_window_starts_a_new_stream() -> None:
    co = _chain()
    x = torch.randn(1, 2, 12, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        co.forward_steps(x[:, :, :6])
        configure_pool_window(co, 5)
        assert not co.in_stream
        torch.testing.assert_close(co.forward_steps(x), co(x))


def test_a_failed_step_resets_the_stream() -> None:
    co = to_continual(nn.Sequential(nn.Conv3d(2, 2, (1, 3, 3)), nn.Conv3d(2, 2, (2, 1, 1))))
    with torch.no_grad(), pytest.raises(RuntimeError):
        co.forward_step(torch.randn(1, 2, 2, 2))  # smaller than the first conv's kernel
    assert not co.in_stream
    with torch.no_grad():
        co.forward_step(torch.randn(1, 2, 4, 4))  # a new stream, not "frame size changed"


def test_frame_rank_is_checked_behind_leading_per_frame_layers() -> None:
    co = to_continual(nn.Sequential(nn.BatchNorm3d(2), nn.Conv3d(2, 2, (2, 1, 1)))).eval()
    with pytest.raises(StreamError, match=r"\(N, C, H, W\)"):
        co.forward_step(torch.randn(1, 2, 3, 4, 4))


def test_stream_follows_a_pool_window_changed_mid_stream() -> None:
    co = _chain().float().eval()
    stream = co.stream()
    with torch.no_grad():
        for _ in range(4):
            stream.push(torch.randn(1, 2, 4, 4))
        configure_pool_window(co, 6)  # resets the model: the stream starts over with the new schedule
        first = next(p for p in (stream.push(torch.randn(1, 2, 4, 4)) for _ in range(20)) if p is not None)
    assert (first.frame_index, first.clip_first) == (co.first_output, co.first_output - co.delay)


def test_stream_refuses_a_model_switched_to_training_mid_stream() -> None:
    co = _chain().float()
    stream = co.stream()
    stream.push(torch.randn(1, 2, 4, 4))
    co.train()
    with pytest.raises(ValueError, match="training mode"):
        stream.push(torch.randn(1, 2, 4, 4))
