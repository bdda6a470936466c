"""Step fast paths (`cozoo.continual.fastpath`) against the plain eager step and plain PyTorch ops."""

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import randomise_batchnorm
from torch import nn

from cozoo.continual import CoSequential, to_continual
from cozoo.continual.fastpath import (
    bn_key,
    depthwise_cache_layout,
    fast_steps,
    fast_steps_enabled,
    fold_bn,
    fold_pairs,
    foldable,
    folding_active,
    pointwise,
    pointwise_applies,
    ring_cache_applies,
    ring_caches,
    ring_weight,
    ring_write,
    temporal_depthwise,
    temporal_depthwise_applies,
)


def _block(groups: int = 1, kernel: tuple[int, int, int] = (3, 3, 3)) -> CoSequential:
    torch.manual_seed(0)
    padding = tuple(k // 2 for k in kernel)
    net = nn.Sequential(nn.Conv3d(4, 4, kernel, padding=padding, groups=groups), nn.BatchNorm3d(4), nn.ReLU())
    randomise_batchnorm(net)
    return to_continual(net.eval())


def test_fast_steps_switch_and_when_folding_applies():
    assert fast_steps_enabled()
    with torch.no_grad():
        assert folding_active()
        with fast_steps(False):
            assert not fast_steps_enabled() and not folding_active()
        assert fast_steps_enabled()
    assert not folding_active()  # autograd on: BatchNorms run as they are


def test_fold_bn_equals_conv_then_batchnorm():
    torch.manual_seed(0)
    conv, bn = nn.Conv3d(3, 5, 3, padding=1), nn.BatchNorm3d(5)
    randomise_batchnorm(bn)
    bn.eval()
    x = torch.randn(2, 3, 4, 6, 6)
    with torch.no_grad():
        weight, bias = fold_bn(conv.weight, conv.bias, bn)
        torch.testing.assert_close(F.conv3d(x, weight, bias, padding=1), bn(conv(x)), rtol=1e-5, atol=1e-5)
        weight, bias = fold_bn(conv.weight, None, bn)
        expected = bn(F.conv3d(x, conv.weight, None, padding=1))
        torch.testing.assert_close(F.conv3d(x, weight, bias, padding=1), expected, rtol=1e-5, atol=1e-5)


def test_foldable_pairs_and_keys():
    bn = nn.BatchNorm3d(4)
    assert not foldable(bn) and foldable(bn.eval())
    assert not foldable(nn.BatchNorm3d(4, track_running_stats=False))
    layers = [nn.Conv3d(4, 4, 1), bn, nn.ReLU(), nn.Conv3d(4, 4, 1), nn.ReLU(), nn.Conv3d(4, 4, 1), bn]
    assert fold_pairs(layers, nn.Conv3d) == {0: bn, 5: bn}
    key = bn_key(bn)
    assert bn_key(None) is None and bn_key(bn) == key
    with torch.no_grad():
        bn.running_mean += 1
    assert bn_key(bn) != key


def test_sequence_folds_batchnorm_at_inference_and_sees_edits():
    co = _block()
    bn = co[1]
    frames = torch.randn(1, 4, 6, 5, 5)
    with torch.no_grad(), fast_steps(False):
        plain = co.forward_steps(frames)
    co.reset()
    calls = []
    step = bn._step
    bn._step = lambda frame: calls.append(1) or step(frame)
    with torch.no_grad():
        assert [layer for layer, _ in co._fold_plan()] == [co[0], co[2]]
        torch.testing.assert_close(co.forward_steps(frames), plain, rtol=1e-5, atol=1e-6)
        assert not calls  # the BatchNorm was folded, not run
        bn.running_var.mul_(4)  # an edit invalidates the cached fold
        co.reset()
        edited = co.forward_steps(frames)
        co.reset()
        with fast_steps(False):
            torch.testing.assert_close(edited, co.forward_steps(frames), rtol=1e-5, atol=1e-6)
    co.reset()
    with pytest.warns(UserWarning, match="gradients enabled"):
        out = co.forward_steps(frames)
    out.sum().backward()  # with autograd, the BatchNorm runs and gets gradients
    assert bn.weight.grad is not None and calls


def test_fold_plan_follows_replaced_children_and_copies():
    co = _block()
    frames = torch.randn(1, 4, 5, 5, 5)
    with torch.no_grad():
        expected = co.forward_steps(frames)
        co.reset()
        twin = copy.deepcopy(co)
        assert [layer for layer, _ in twin._fold_plan()] == [twin[0], twin[2]]
        co[1] = to_continual(nn.Sequential(nn.Identity()))[0]
        assert [layer for layer, _ in co._fold_plan()] == [co[0], co[1], co[2]]
        torch.testing.assert_close(twin.forward_steps(frames), expected)


@pytest.mark.parametrize("kernel", [(3, 3, 3), (5, 1, 1)])
def test_depthwise_steps_equal_plain_steps_and_cache_layout(kernel):
    co = _block(groups=4, kernel=kernel)
    frames = torch.randn(2, 4, 7, 6, 6)
    with torch.no_grad(), fast_steps(False):
        plain = co.forward_steps(frames)
        assert co[0]._state.is_contiguous()
    co.reset()
    with torch.no_grad():
        fast = co.forward_steps(frames)
    spatial = kernel[1:] != (1, 1)
    assert co[0]._state.is_contiguous(memory_format=torch.channels_last_3d) == spatial
    assert co[0]._ring_slot == 7 % kernel[0]  # a ring cache: 7 frames written, one slot each
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_ring_cache_gradients_equal_the_shifted_cache():
    co = _block(groups=4)
    frames = torch.randn(1, 4, 6, 5, 5)
    grads = []
    for enabled in (False, True):
        co.zero_grad()
        co.reset()
        with fast_steps(enabled), pytest.warns(UserWarning, match="gradients enabled"):
            co.forward_steps(frames).square().sum().backward()
        assert (co[0]._ring_slot is not None) == enabled
        grads.append(co[0].weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_ring_caches_off_keeps_the_other_fast_paths():
    """Under ``ring_caches(False)`` (the stream pool's setting) a depthwise cache shifts, still laid out
    channels-last, and the BatchNorm is still folded; the outputs equal the plain step."""
    co = _block(groups=4)
    frames = torch.randn(2, 4, 5, 6, 6)
    with torch.no_grad(), fast_steps(False):
        plain = co.forward_steps(frames)
    co.reset()
    with torch.no_grad(), ring_caches(False):
        assert not ring_cache_applies(frames[:, :, 0], True, 1) and folding_active()
        shifted = co.forward_steps(frames)
    assert co[0]._ring_slot is None and co[0]._state.is_contiguous(memory_format=torch.channels_last_3d)
    assert "folded" in co[0].__dict__["_derived"]
    torch.testing.assert_close(shifted, plain, rtol=1e-5, atol=1e-5)
    assert ring_cache_applies(frames[:, :, 0], True, 1)  # restored


def test_ring_helpers():
    frame = torch.randn(1, 2, 3, 3)
    assert ring_cache_applies(frame, True, 1)
    assert not ring_cache_applies(frame, False, 1) and not ring_cache_applies(frame, True, 2)
    with fast_steps(False):
        assert not ring_cache_applies(frame, True, 1)
    cache = torch.zeros(1, 2, 3, 3, 3)
    with torch.no_grad():
        assert ring_write(cache, frame, 1) is cache and torch.equal(cache[:, :, 1], frame)
    written = ring_write(cache, frame + 1, 2)  # autograd on: a new tensor, the old one untouched
    assert written is not cache and torch.equal(written[:, :, 2], frame + 1) and not cache[:, :, 2].any()
    weight = torch.arange(3.0).view(1, 1, 3, 1, 1)  # taps 0 (oldest), 1, 2 (newest)
    assert ring_weight(weight, 0).flatten().tolist() == [2.0, 0.0, 1.0]  # slot 0 newest, slot 1 oldest
    assert ring_weight(weight, 2).flatten().tolist() == [0.0, 1.0, 2.0]


def test_depthwise_cache_layout_and_temporal_depthwise():
    frame = torch.randn(1, 4, 5, 5)
    assert depthwise_cache_layout(frame, (3, 3)) == torch.channels_last_3d
    assert depthwise_cache_layout(frame, (1, 1)) == torch.contiguous_format
    with fast_steps(False):
        assert depthwise_cache_layout(frame, (3, 3)) == torch.contiguous_format
    weight, bias = torch.randn(4, 1, 3, 1, 1), torch.randn(4)
    assert temporal_depthwise_applies(weight, (1, 1), (0, 0))
    assert not temporal_depthwise_applies(weight, (2, 2), (0, 0))
    assert not temporal_depthwise_applies(torch.randn(4, 1, 3, 3, 3), (1, 1), (1, 1))
    window = torch.randn(2, 4, 3, 5, 6)
    expected = F.conv3d(window, weight, bias, groups=4).squeeze(2)
    torch.testing.assert_close(temporal_depthwise(window, weight, bias), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(temporal_depthwise(window, weight, None), expected - bias.view(1, -1, 1, 1),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_pointwise_is_the_1x1_conv_in_the_inputs_layout(layout):
    """`pointwise` equals ATen's 2D conv (bias or not, batch 2) and keeps the input's memory layout."""
    x = torch.randn(2, 6, 5, 7).contiguous(memory_format=layout)
    weight, bias = torch.randn(9, 6, 1, 1), torch.randn(9)
    for b in (bias, None):
        out = pointwise(x, weight, b)
        torch.testing.assert_close(out, F.conv2d(x, weight, b), rtol=1e-5, atol=1e-5)
        assert out.is_contiguous(memory_format=layout)
    assert pointwise_applies(x, weight, (1, 1), (0, 0), 1)
    assert not pointwise_applies(x, weight, (2, 2), (0, 0), 1)
    assert not pointwise_applies(x, torch.randn(9, 3, 1, 1), (1, 1), (0, 0), 2)
    assert not pointwise_applies(x, torch.randn(9, 6, 3, 3), (1, 1), (1, 1), 1)
    with fast_steps(False):
        assert not pointwise_applies(x, weight, (1, 1), (0, 0), 1)
