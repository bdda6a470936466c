"""CUDA-graph step path: replayed graphs give exactly the eager step outputs (needs a GPU)."""

import pytest
import torch

import cozoo
from cozoo.continual import CudaGraphStepper

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


def test_cpu_frame_is_refused_with_a_reason():
    model = cozoo.create_model("cox3d_xs", num_classes=3).eval()
    with pytest.raises(ValueError, match="CUDA"):
        CudaGraphStepper(model, torch.randn(1, 3, 32, 32))


def test_regular_model_is_refused():
    with pytest.raises(TypeError, match="continual"):
        CudaGraphStepper(cozoo.create_model("x3d_xs"), torch.randn(1, 3, 32, 32))


@needs_cuda
@pytest.mark.parametrize("name", ["cox3d_xs", "coi3d_r50", "coslowfast_r50", "cocnn_lstm"])
def test_graph_steps_equal_eager_steps(name):
    torch.manual_seed(0)
    model = cozoo.create_model(name, num_classes=5).cuda().eval()
    frames = torch.randn(model.first_output + 4 * model.stride + 3, 2, 3, 32, 32, device="cuda")
    with torch.no_grad():
        eager = [model.forward_step(f) for f in frames]
        eager = [None if e is None else e.clone() for e in eager]
        stepper = CudaGraphStepper(model, frames[0])
        graphed = [stepper.step(f) for f in frames]
        graphed = [None if g is None else g.clone() for g in graphed]
    assert stepper.captured
    assert [e is None for e in eager] == [g is None for g in graphed]
    for e, g in zip(eager, graphed, strict=True):
        if e is not None:
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)
