"""Residual merges and sequences: step == clip with delays aligned, and clip == source with source padding."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cozoo.continual import CoResidual, to_continual
from cozoo.layers.blocks import Flatten, GlobalAvgPool3d, Residual, SqueezeExcitation


def _block(kernels: list[int], stride: int, channels: int) -> Residual:
    layers: list[nn.Module] = []
    for i, k in enumerate(kernels):
        s = stride if i == len(kernels) - 1 else 1
        conv = nn.Conv3d(channels, channels, (k, 3, 3), stride=(s, 1, 1), padding=(k // 2, 1, 1))
        layers += [conv, nn.ReLU()]
    shortcut = nn.Conv3d(channels, channels, 1, stride=(stride, 1, 1)) if stride > 1 else None
    return Residual(nn.Sequential(*layers[:-1]), shortcut, nn.ReLU())


block_specs = st.lists(
    st.tuples(st.lists(st.sampled_from([1, 3, 5]), min_size=1, max_size=3), st.sampled_from([1, 1, 2])),
    min_size=1, max_size=3,
)


@settings(max_examples=30, deadline=None)
@given(block_specs, st.integers(0, 2**16))
def test_residual_stack_steps_equal_clip_and_source(specs, seed):
    torch.manual_seed(seed)
    channels = 3
    net = nn.Sequential(*[_block(kernels, stride, channels) for kernels, stride in specs]).eval()
    co = to_continual(net).eval()
    x = torch.randn(1, channels, co.first_output + 3 * co.stride + 1, 4, 4)
    with torch.no_grad():
        clip, steps = co(x), co.forward_steps(x)
        assert clip.shape[2] > 0
        assert steps is not None and steps.shape == clip.shape
        assert (steps - clip).abs().max() <= 1e-5 * clip.abs().max().clamp_min(1)
        co.set_source_padding(True)
        assert torch.allclose(co(x), net(x), atol=1e-6)


def test_residual_outputs_arrive_when_schedule_says():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv3d(2, 4, (5, 1, 1), padding=(2, 0, 0)),
        _block([3, 3], 2, 4),
        SqueezeExcitation(4, 2),
        GlobalAvgPool3d(),
        Flatten(),
        nn.Linear(4, 3),
    ).eval()
    co = to_continual(net, pool_window=8).eval()
    with torch.no_grad():
        emitted = [t for t in range(60) if co.forward_step(torch.randn(1, 2, 3, 3)) is not None]
    assert emitted[0] == co.first_output
    assert all(b - a == co.stride == 2 for a, b in zip(emitted, emitted[1:], strict=False))
    # stem k5, two k3 convs (the second strided), pool window 4 at stride 2
    assert co.receptive_field == 5 + 2 * 2 + (4 - 1) * 2
    assert co.delay == co.receptive_field - co.temporal_padding - 1


def test_shortcut_fifo_holds_lag_frames_and_is_read_before_its_push():
    torch.manual_seed(0)
    co = to_continual(_block([3, 3], 1, 2))
    assert isinstance(co, CoResidual)
    assert co.alignment.read_first == [False, True]
    for _ in range(10):
        co.forward_step(torch.randn(1, 2, 3, 3))
    assert co._fifos[1].shape[2] == co.alignment.lags[1] == co.alignment.fifo_depth(1) == 2


def _state_tensors(model: nn.Module) -> list[torch.Tensor]:
    found = []
    for module in model.modules():
        for key in ("_state", "_fifos"):
            value = module.__dict__.get(key)
            values = value if isinstance(value, list) else [value]
            found += [v for v in values if isinstance(v, torch.Tensor)]
    return found


def test_ten_thousand_frame_stream_keeps_constant_state():
    """State buffers are allocated once and updated in place: same tensors, same bytes after 10,000 frames."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv3d(2, 3, (3, 1, 1), padding=(1, 0, 0)),
        _block([3, 1], 2, 3),
        nn.MaxPool3d((2, 1, 1), stride=(1, 1, 1)),
        GlobalAvgPool3d(),
        Flatten(),
        nn.Linear(3, 2),
    ).eval()
    co = to_continual(net, pool_window=8).eval()
    frames = torch.randn(64, 1, 2, 2, 2)
    with torch.no_grad():
        for t in range(64):
            co.forward_step(frames[t])
        before = [(s.data_ptr(), s.nbytes) for s in _state_tensors(co)]
        for t in range(10_000 - 64):
            co.forward_step(frames[t % 64])
    after = [(s.data_ptr(), s.nbytes) for s in _state_tensors(co)]
    assert before == after and len(before) >= 4
