"""Step mode == clip mode for the continual layers, over random layer shapes (hypothesis)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cozoo.continual import CoConv3d, CoGlobalAvgPool3d, StreamError, to_continual


def _assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    if expected.numel():
        scale = expected.abs().max().clamp_min(1.0)
        assert (actual - expected).abs().max() <= 1e-5 * scale


conv_shapes = st.fixed_dictionaries(
    {
        "c_in": st.integers(1, 6),
        "c_out": st.integers(1, 6),
        "k": st.integers(1, 4),
        "stride": st.integers(1, 3),
        "dilation": st.integers(1, 3),
        "padding": st.integers(0, 3),
        "groups": st.sampled_from([1, 2]),
        "cache": st.sampled_from(["pre", "post", "auto"]),
        "bias": st.booleans(),
        "frames": st.integers(1, 24),
    }
)


def _conv(p: dict) -> nn.Conv3d:
    c_in, c_out = p["c_in"] * p["groups"], p["c_out"] * p["groups"]
    return nn.Conv3d(
        c_in, c_out, (p["k"], 3, 2), stride=(p["stride"], 2, 1), padding=(p["padding"], 1, 0),
        dilation=(p["dilation"], 1, 1), groups=p["groups"], bias=p["bias"],
    )


@settings(max_examples=60, deadline=None)
@given(conv_shapes, st.integers(0, 2**16))
def test_conv_steps_equal_clip(p, seed):
    torch.manual_seed(seed)
    conv = _conv(p)
    co = to_continual(conv, cache=p["cache"])
    x = torch.randn(2, conv.in_channels, p["frames"], 5, 4)
    clip = co(x)
    steps = co.forward_steps(x)
    if clip.shape[2] == 0:
        assert steps is None
        return
    _assert_close_to_scale(steps, clip)
    # after reset, a second stream gives the same again
    co.reset()
    _assert_close_to_scale(co.forward_steps(x), clip)


@settings(max_examples=40, deadline=None)
@given(conv_shapes, st.integers(0, 2**16))
def test_conv_clip_is_source_without_padded_outputs(p, seed):
    """Continual clip mode = the source's outputs that never touch temporal padding; with source padding on,
    clip mode is the source itself."""
    torch.manual_seed(seed)
    conv = _conv(p)
    co = to_continual(conv, cache=p["cache"])
    rf = (p["k"] - 1) * p["dilation"] + 1
    x = torch.randn(1, conv.in_channels, p["frames"] + rf, 4, 4)
    source = conv(x)
    first = -(-p["padding"] // p["stride"])
    clip = co(x)
    _assert_close_to_scale(clip, source[:, :, first : first + clip.shape[2]])
    co.set_source_padding(True)
    _assert_close_to_scale(co(x), source)


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([nn.MaxPool3d, nn.AvgPool3d]), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2),
    st.integers(1, 20), st.integers(0, 2**16),
)
def test_pool_steps_equal_clip(pool_type, k, stride, padding, frames, seed):
    padding, frames = min(padding, k // 2), max(frames, k)
    torch.manual_seed(seed)
    pool = pool_type((k, 3, 3), stride=(stride, 2, 2), padding=(padding, 1, 1))
    co = to_continual(pool)
    x = torch.randn(2, 3, frames, 6, 6)
    clip = co(x)
    steps = co.forward_steps(x)
    if clip.shape[2] == 0:
        assert steps is None
    else:
        _assert_close_to_scale(steps, clip)
    co.set_source_padding(True)
    _assert_close_to_scale(co(x), pool(x))


@pytest.mark.parametrize("cache", ["pre", "post"])
def test_per_step_compute_is_one_output_frame(cache):
    """In steady state both cache forms do one conv per step, whose MACs equal one output frame's."""
    conv = nn.Conv3d(4, 6, (3, 3, 3), padding=(1, 1, 1))
    co = CoConv3d(conv, cache=cache)
    for _ in range(2):  # warm-up
        co.forward_step(torch.randn(1, 4, 5, 5))
    calls = []
    hook = torch.nn.functional.conv2d

    def counting_conv2d(inp, weight, *args, **kwargs):
        calls.append(weight.numel() * inp.shape[-1] * inp.shape[-2])
        return hook(inp, weight, *args, **kwargs)

    torch.nn.functional.conv2d = counting_conv2d
    try:
        for _ in range(4):
            co.forward_step(torch.randn(1, 4, 5, 5))
    finally:
        torch.nn.functional.conv2d = hook
    assert len(calls) == 4
    assert all(c == conv.weight.numel() * 25 for c in calls)


def test_cache_auto_picks_smaller_state():
    assert CoConv3d(nn.Conv3d(2, 16, (3, 1, 1))).cache == "pre"
    assert CoConv3d(nn.Conv3d(16, 2, (3, 1, 1))).cache == "post"
    assert CoConv3d(nn.Conv3d(16, 2, (3, 1, 1), stride=(2, 1, 1))).cache == "pre"
    assert CoConv3d(nn.Conv3d(8, 8, (3, 3, 3), groups=8)).cache == "pre"  # depthwise: one 3D conv per step
    with pytest.raises(ValueError, match="cache"):
        CoConv3d(nn.Conv3d(1, 1, 1), cache="middle")


@torch.no_grad()  # inference: state buffers are updated in place (with autograd on, they are replaced)
def test_long_stream_has_constant_state():
    torch.manual_seed(0)
    model = to_continual(nn.Sequential(nn.Conv3d(2, 3, (3, 1, 1)), nn.ReLU(), nn.Conv3d(3, 2, (2, 1, 1))))
    frame = torch.randn(1, 2, 3, 3)
    model.forward_step(frame)
    states = [m._state for m in model.modules() if isinstance(m, CoConv3d)]
    pointers = [s.data_ptr() for s in states if s is not None]
    for _ in range(1200):
        model.forward_step(torch.randn(1, 2, 3, 3))
    after = [m._state.data_ptr() for m in model.modules() if isinstance(m, CoConv3d)]
    assert pointers == after[: len(pointers)]
    assert all(m._state.shape[2] <= 3 for m in model.modules() if isinstance(m, CoConv3d))


def test_global_pool_window_and_extension():
    pool = CoGlobalAvgPool3d(window=4)
    x = torch.randn(2, 3, 10, 2, 2)
    expected = torch.stack([x[:, :, t - 3 : t + 1].mean(dim=(2, 3, 4)) for t in range(3, 10)], dim=2)
    _assert_close_to_scale(pool(x).squeeze(-1).squeeze(-1), expected)
    _assert_close_to_scale(pool.forward_steps(x).squeeze(-1).squeeze(-1), expected)
    with pytest.raises(ValueError, match="window"):
        pool.window = 0


def test_stream_errors_name_the_problem():
    co = to_continual(nn.Conv3d(3, 4, (3, 3, 3), padding=1))
    with pytest.raises(StreamError, match="one frame"):
        co.forward_step(torch.randn(1, 3, 4, 5, 5))
    with pytest.raises(StreamError, match="3 channels"):
        co.forward_step(torch.randn(1, 2, 5, 5))
    with pytest.raises(StreamError, match="floating point"):
        co.forward_step(torch.ones(1, 3, 5, 5, dtype=torch.uint8))
    with pytest.raises(StreamError, match="float64"):
        co.forward_step(torch.randn(1, 3, 5, 5, dtype=torch.float64))
    co.forward_step(torch.randn(2, 3, 5, 5))
    with pytest.raises(StreamError, match="batch size changed"):
        co.forward_step(torch.randn(3, 3, 5, 5))
    with pytest.raises(StreamError, match="frame size changed"):
        co.forward_step(torch.randn(2, 3, 6, 5))
    co.reset()
    assert co.forward_step(torch.randn(3, 3, 5, 5)) is None  # a new stream may change batch size


def test_a_frame_given_where_a_clip_belongs_is_named():
    model = to_continual(nn.Sequential(nn.Conv3d(3, 4, (3, 3, 3), padding=1), nn.ReLU()))
    one_frame = r"\(N, C, T, H, W\), got shape \(1, 3, 5, 5\); use forward_step\(frame\) for one frame"
    with pytest.raises(StreamError, match="forward_steps expects frames " + one_frame):
        model.forward_steps(torch.randn(1, 3, 5, 5))
    with pytest.raises(StreamError, match="expected a clip " + one_frame):
        model(torch.randn(1, 3, 5, 5))
    with pytest.raises(StreamError, match=r"a clip \(N, C, T, H, W\), got shape \(1, 3, 2, 4, 5, 5\)$"):
        model(torch.randn(1, 3, 2, 4, 5, 5))
    assert model(torch.randn(1, 3, 3, 5, 5)).shape == (1, 4, 1, 5, 5)


def test_common_activations_and_dropout3d_step_per_frame():
    torch.manual_seed(0)
    layers = [nn.GELU(), nn.Hardswish(), nn.Hardsigmoid(), nn.LeakyReLU(0.1), nn.ELU(), nn.Tanh(), nn.ReLU6(),
              nn.Dropout3d(0.5)]
    net = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), *layers, nn.Conv3d(4, 3, (2, 1, 1))).eval()
    model = to_continual(net).eval()
    x = torch.randn(1, 2, 9, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_steps(x), model(x), rtol=1e-5, atol=1e-6)


def test_unknown_module_type_is_named():
    with pytest.raises(TypeError, match="LSTMCell"):
        to_continual(nn.Sequential(nn.LSTMCell(2, 2)))


def test_to_continual_needs_pool_window_without_config():
    from cozoo.layers.blocks import GlobalAvgPool3d

    with pytest.raises(ValueError, match="pool_window"):
        to_continual(nn.Sequential(nn.Conv3d(1, 1, 1), GlobalAvgPool3d()))


@pytest.mark.parametrize("shape", [(2, 3, 4, 5, 6), (2, 3, 1, 5, 6), (2, 7, 16)])
def test_shift_in_drops_the_oldest_entry_and_appends_the_frame(shape):
    """Frame-map caches (5-D) shift entry by entry on CPU, others by one concatenation: same result."""
    from cozoo.continual.base import shift_in

    buffer = torch.randn(shape)
    frame = torch.randn(shape[:2] + shape[3:])
    expected = torch.cat((buffer[:, :, 1:], frame.unsqueeze(2)), dim=2)
    kept = buffer.clone()
    shifted = shift_in(buffer, frame)  # gradients on: a new tensor, the buffer untouched
    assert torch.equal(shifted, expected) and torch.equal(buffer, kept) and shifted is not buffer
    with torch.no_grad():
        assert shift_in(buffer, frame) is buffer  # inference: in place
    assert torch.equal(buffer, expected)
