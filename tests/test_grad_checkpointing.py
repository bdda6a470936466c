"""set_grad_checkpointing: the same gradients (and BatchNorm statistics, dropout masks) as the plain
backward pass, per family."""

import copy

import pytest
import torch

import cozoo
from cozoo.layers.heads import checkpoint_segments
from cozoo.models.resnet3d import create_resnet3d

CASES = {
    "x3d": (lambda: cozoo.create_model("x3d_xs", num_classes=4, width_factor=0.5, depth_factor=0.3,
                                       head_width=16, dropout=0.5), (2, 3, 4, 32, 32)),
    "resnet3d": (lambda: create_resnet3d(num_classes=4, stem_temporal_kernel=3, stage1_pool=True,
                                         conv_a_temporal_kernels=((3,), (1,), (3,), (1,)),
                                         depths=(1, 2, 1, 1),
                                         stem_width=4, dropout=0.5), (2, 3, 4, 32, 32)),
    "r2plus1d": (lambda: cozoo.create_model("r2plus1d_18", num_classes=4), (1, 3, 4, 32, 32)),
    "slowfast": (lambda: cozoo.create_model("slowfast_r50", num_classes=4), (1, 3, 8, 32, 32)),
    "late_fusion": (lambda: cozoo.create_model("late_fusion", num_classes=4, widths=(8, 16)),
                    (2, 3, 4, 32, 32)),
    "cnn_lstm": (lambda: cozoo.create_model("cnn_lstm", num_classes=4, widths=(8, 16), hidden_size=8),
                 (2, 3, 4, 32, 32)),
}


def _train_step(model, x, labels):
    torch.manual_seed(5)  # the same dropout masks for both runs (and for the recomputation)
    loss = torch.nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    return loss.detach()


@pytest.mark.parametrize("family", list(CASES))
def test_checkpointed_gradients_equal_plain(family):
    build, shape = CASES[family]
    torch.manual_seed(0)
    plain = build().train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.set_grad_checkpointing(True)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(shape[0]) % 4
    loss = _train_step(plain, x, labels)
    torch.testing.assert_close(_train_step(checkpointed, x, labels), loss, rtol=1e-6, atol=0)
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters(), strict=True):
        assert b.grad is not None, name
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-5 * a.grad.abs().max().item() + 1e-12,
                                   msg=lambda m, n=name: f"{n}: {m}")
    # BatchNorm running statistics are updated once, not again by the recomputation
    for (name, a), (_, b) in zip(plain.named_buffers(), checkpointed.named_buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_checkpointing_only_under_autograd_and_segments_start_at_convs():
    build, shape = CASES["x3d"]
    model = build().eval()
    model.set_grad_checkpointing(True)
    x = torch.randn(*shape)
    with torch.no_grad():
        out = model(x)
    model.set_grad_checkpointing(False)
    with torch.no_grad():
        torch.testing.assert_close(model(x), out, rtol=0, atol=0)
    segments = checkpoint_segments(model.feature_modules())
    # stem (conv_xy starts it, conv_t its own), one per residual block, conv5+bn5+relu5 of the head
    blocks = sum(len(stage) for name, stage in model.named_children() if name.startswith("stage"))
    assert len(segments) == 2 + blocks + 1
    assert [type(m).__name__ for m in segments[-1]] == ["Conv3d", "BatchNorm3d", "ReLU"]
