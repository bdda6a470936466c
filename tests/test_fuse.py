"""Folding BatchNorm into the preceding conv: same outputs, fewer ops, inference only."""

import pytest
import torch
from helpers import randomise_batchnorm
from torch import nn

import cozoo
from cozoo import fuse_conv_bn


def _model_and_fused(name: str) -> tuple[nn.Module, nn.Module]:
    """``name`` with random BatchNorm statistics (eval mode), and its fused copy with fewer BatchNorms."""
    torch.manual_seed(0)
    model = cozoo.create_model(name, num_classes=4)
    randomise_batchnorm(model)
    model.eval()
    fused = fuse_conv_bn(model)
    batchnorms = [sum(isinstance(m, nn.BatchNorm3d) for m in net.modules()) for net in (model, fused)]
    assert batchnorms[1] < batchnorms[0]
    return model, fused


def _assert_close(got: torch.Tensor, reference: torch.Tensor) -> None:
    torch.testing.assert_close(got, reference, rtol=1e-4, atol=1e-4 * reference.abs().max().item())


@pytest.mark.parametrize("name", ["cox3d_xs", "coi3d_r50", "cor2plus1d_18"])
def test_fused_model_computes_the_same_in_clip_and_step_mode(name):
    model, fused = _model_and_fused(name)
    x = torch.randn(1, 3, model.first_output + 2 * model.stride + 1, 32, 32)
    with torch.no_grad():
        reference = model(x)
        _assert_close(fused(x), reference)
        _assert_close(fused.forward_steps(x), reference)


@pytest.mark.parametrize("name", ["x3d_xs", "i3d_r50", "slowfast_r50", "r2plus1d_18"])
def test_fused_regular_model_computes_the_same_clip_outputs(name):
    model, fused = _model_and_fused(name)
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        _assert_close(fused(x), model(x))


def test_a_batchnorm_after_a_factorised_conv_is_folded_too():
    """R(2+1)D's conv is a Sequential ending in the temporal conv; the BatchNorm after it folds into that."""
    _, fused = _model_and_fused("r2plus1d_18")
    assert not any(isinstance(m, nn.BatchNorm3d) for m in fused.modules())


def test_fusing_a_training_model_is_refused():
    with pytest.raises(ValueError, match="eval"):
        fuse_conv_bn(cozoo.create_model("cox3d_xs"))
