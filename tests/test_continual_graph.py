"""CUDA: every continual model's clip mode == its eager steps == its CUDA-graph replays (needs a GPU)."""

from collections.abc import Iterator

import pytest
import torch
from helpers import randomise_batchnorm

import cozoo
from cozoo.continual import CudaGraphStepper
from cozoo.continual.fuse import fuse_conv_bn

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
CONTINUAL = cozoo.list_models("co*")
FRAME_SIZE = {"coc3d": 112}  # C3D's fc6 fixes its input size


@pytest.fixture()
def exact_float32() -> Iterator[None]:
    """TF32 off for convs and matmuls: clip and step mode sum in different orders, so with TF32's 10-bit
    mantissa they agree only to ~1e-3; in true float32 they agree to ~1e-6."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_cpu_frame_is_refused_with_a_reason():
    model = cozoo.create_model("cox3d_xs", num_classes=3).eval()
    with pytest.raises(ValueError, match="CUDA"):
        CudaGraphStepper(model, torch.randn(1, 3, 32, 32))


def test_regular_model_is_refused():
    with pytest.raises(TypeError, match="continual"):
        CudaGraphStepper(cozoo.create_model("x3d_xs"), torch.randn(1, 3, 32, 32))


def _graph_steps(model: torch.nn.Module, frames: torch.Tensor) -> list[torch.Tensor | None]:
    """Each replay's output is a static buffer that the next replay of its phase overwrites: copy it."""
    stepper = CudaGraphStepper(model, frames[:, :, 0])
    outputs = []
    for t in range(frames.shape[2]):
        out = stepper.step(frames[:, :, t])
        outputs.append(None if out is None else out.clone())
    assert stepper.captured
    return outputs


@needs_cuda
@pytest.mark.parametrize("name", CONTINUAL)
def test_clip_equals_eager_steps_equals_graph_replays(name, exact_float32):
    torch.manual_seed(0)
    window = 16 if name.endswith("_64") else None
    model = cozoo.create_model(name, num_classes=5, **({"pool_window": window} if window else {}))
    randomise_batchnorm(model)
    model = model.cuda().eval()
    size = FRAME_SIZE.get(name, 32)
    frames = torch.randn(2, 3, model.first_output + 4 * model.stride + 3, size, size, device="cuda")
    with torch.no_grad():
        clip = model(frames)
        eager = model.forward_steps(frames)
        graphed = _graph_steps(model, frames)
    scale = clip.abs().max().item()
    torch.testing.assert_close(eager, clip, rtol=1e-4, atol=1e-4 * scale)
    emitted = [out for out in graphed if out is not None]
    assert len(emitted) == clip.shape[2]
    torch.testing.assert_close(torch.stack(emitted, dim=2), clip, rtol=1e-4, atol=1e-4 * scale)


@needs_cuda
def test_graph_replays_of_fused_model_equal_unfused_clip(exact_float32):
    torch.manual_seed(0)
    model = cozoo.create_model("cox3d_s", num_classes=5)
    randomise_batchnorm(model)
    model = model.cuda().eval()
    frames = torch.randn(1, 3, model.first_output + 5, 32, 32, device="cuda")
    with torch.no_grad():
        clip = model(frames)
        emitted = [out for out in _graph_steps(fuse_conv_bn(model), frames) if out is not None]
    scale = clip.abs().max().item()
    torch.testing.assert_close(torch.stack(emitted, dim=2), clip, rtol=1e-4, atol=1e-4 * scale)


@needs_cuda
def test_graph_stepper_restarts_cleanly_on_a_new_stream(exact_float32):
    torch.manual_seed(0)
    model = cozoo.create_model("cox3d_xs", num_classes=5).cuda().eval()
    frames = torch.randn(1, 3, model.first_output + 6, 32, 32, device="cuda")
    with torch.no_grad():
        first = _graph_steps(model, torch.randn_like(frames))
        second = _graph_steps(model, frames)
        clip = model(frames)
    assert len(first) == len(second)
    emitted = [out for out in second if out is not None]
    scale = clip.abs().max().item()
    torch.testing.assert_close(torch.stack(emitted, dim=2), clip, rtol=1e-4, atol=1e-4 * scale)
