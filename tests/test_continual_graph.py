"""CUDA: every continual model's clip mode == its eager steps == its CUDA-graph replays (needs a GPU)."""

import copy
from collections.abc import Iterator

import pytest
import torch
from helpers import randomise_batchnorm
from torch import nn

import cozoo
from cozoo import fuse_conv_bn
from cozoo.continual import CudaGraphStepper, StreamError, to_continual
from cozoo.continual.fastpath import fast_steps

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


def _cuda_model(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    model = cozoo.create_model(name, num_classes=5, **kwargs)
    randomise_batchnorm(model)
    return model.cuda().eval()


def _graph_steps(
    model: torch.nn.Module, frames: torch.Tensor, compile: bool = False
) -> list[torch.Tensor | None]:
    """Each replay's output is a static buffer that the next replay of its phase overwrites: copy it."""
    stepper = CudaGraphStepper(model, frames[:, :, 0], compile=compile)
    outputs = []
    for t in range(frames.shape[2]):
        out = stepper.step(frames[:, :, t])
        outputs.append(None if out is None else out.clone())
    assert stepper.captured
    return outputs


def _assert_emitted_equal(outputs: list[torch.Tensor | None], clip: torch.Tensor) -> None:
    """The emitted step outputs, stacked in time, equal the clip-mode outputs."""
    emitted = [out for out in outputs if out is not None]
    assert len(emitted) == clip.shape[2]
    scale = clip.abs().max().item()
    torch.testing.assert_close(torch.stack(emitted, dim=2), clip, rtol=1e-4, atol=1e-4 * scale)


@needs_cuda
@pytest.mark.parametrize("name", CONTINUAL)
def test_clip_equals_eager_steps_equals_graph_replays(name, exact_float32):
    model = _cuda_model(name, **({"pool_window": 16} if name.endswith("_64") else {}))
    size = FRAME_SIZE.get(name, 32)
    frames = torch.randn(2, 3, model.first_output + 4 * model.stride + 3, size, size, device="cuda")
    with torch.no_grad():
        clip = model(frames)
        eager = model.forward_steps(frames)
        graphed = _graph_steps(model, frames)
    torch.testing.assert_close(eager, clip, rtol=1e-4, atol=1e-4 * clip.abs().max().item())
    _assert_emitted_equal(graphed, clip)


@needs_cuda
def test_graph_replays_of_fused_model_equal_unfused_clip(exact_float32):
    model = _cuda_model("cox3d_s")
    frames = torch.randn(1, 3, model.first_output + 5, 32, 32, device="cuda")
    with torch.no_grad():
        clip = model(frames)
        graphed = _graph_steps(fuse_conv_bn(model), frames)
    _assert_emitted_equal(graphed, clip)


@needs_cuda
def test_graph_stepper_restarts_cleanly_on_a_new_stream(exact_float32):
    model = _cuda_model("cox3d_xs")
    frames = torch.randn(1, 3, model.first_output + 6, 32, 32, device="cuda")
    with torch.no_grad():
        first = _graph_steps(model, torch.randn_like(frames))
        second = _graph_steps(model, frames)
        clip = model(frames)
    assert len(first) == len(second)
    _assert_emitted_equal(second, clip)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_step_compiles_as_one_graph_with_periodic_guards(backend):
    """The CUDA fast path compiles ``_step`` with ``fullgraph=True``: no graph breaks, and the modules' Python
    state (step counters) is periodic in steady state, so a stride-2 network compiles once per phase.
    ``aot_eager`` checks tracing and the functionalised in-place state updates; ``inductor`` (C++ on CPU)
    also generates and runs the fused code, as on a GPU (with Triton there)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from cozoo.layers.blocks import Residual

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv3d(2, 4, (3, 3, 3), padding=(1, 1, 1)), nn.BatchNorm3d(4), nn.ReLU(),
        Residual(nn.Conv3d(4, 4, 3, padding=1, groups=4), None, nn.ReLU()),  # depthwise; shortcut FIFO
        nn.Conv3d(4, 2, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)),  # pre-cached, strided
        nn.Conv3d(2, 6, (2, 1, 1)), nn.AvgPool3d((2, 1, 1), stride=1),  # post-cached (C_in < C_out)
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(6, 3),
    ).eval()
    model = to_continual(net, pool_window=4).eval()
    reference = copy.deepcopy(model)
    assert model.stride == 2
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model._step, backend=backend, dynamic=False, fullgraph=True)
    frames = torch.randn(1, 2, model.first_output + 12, 5, 5)
    with torch.no_grad(), fast_steps(False):  # as on CUDA: no CPU ring caches (their slot adds phases)
        for t in range(frames.shape[2]):
            frame = frames[:, :, t]
            expected = reference.forward_step(frame)
            got = model.forward_step(frame) if t < model.first_output + model.stride else compiled(frame)
            assert (got is None) == (expected is None)
            if got is not None:
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert counters["stats"]["unique_graphs"] == model.stride
    assert not counters["graph_break"]
    torch._dynamo.reset()


@needs_cuda
def test_compiled_graph_replays_equal_clip(exact_float32):
    model = _cuda_model("cox3d_xs")
    frames = torch.randn(2, 3, model.first_output + 2 * model.stride + 4, 32, 32, device="cuda")
    with torch.no_grad():
        clip = model(frames)
        graphed = _graph_steps(model, frames, compile=True)
    _assert_emitted_equal(graphed, clip)


@needs_cuda
def test_replays_refuse_a_frame_unlike_the_captured_input():
    model = _cuda_model("cox3d_xs")
    frames = torch.randn(1, 3, model.first_output + 2 * model.stride + 2, 32, 32, device="cuda")
    stepper = CudaGraphStepper(model, frames[:, :, 0])
    with torch.no_grad():
        for t in range(frames.shape[2]):
            stepper.step(frames[:, :, t])
        assert stepper.captured
        for bad in (frames[:, :, 0].expand(2, -1, -1, -1), frames[:, :, 0].double(), frames[:, :, 0].cpu()):
            with pytest.raises(StreamError, match="does not match the captured graphs' input"):
                stepper.step(bad)
        model.reset()  # frees the state buffers the graphs write into
        with pytest.raises(StreamError, match="the model was reset after its steps were captured"):
            stepper.step(frames[:, :, 0])


@needs_cuda
def test_stream_with_cuda_graphs_equals_eager_stream(exact_float32):
    model = _cuda_model("coi3d_r50")  # temporal stride 2: predictions on every other frame
    frames = torch.randn(model.first_output + 4 * model.stride, 2, 3, 32, 32, device="cuda")
    stream = model.stream()
    eager = [stream.push(f) for f in frames]
    graphs = model.stream(cuda_graphs=True)
    graphed = [graphs.push(f) for f in frames]
    assert [p is None for p in graphed] == [p is None for p in eager]
    for got, expected in zip(graphed, eager, strict=True):
        if expected is not None:
            assert got.stamp == expected.stamp
            torch.testing.assert_close(got.logits, expected.logits, rtol=1e-4, atol=1e-5)
    model.reset()  # a direct reset starts a new stream: new graphs, frame count from 0
    again = [graphs.push(f) for f in frames]
    assert [p.frame_index for p in again if p is not None] == [p.frame_index for p in eager if p is not None]


@needs_cuda
def test_padded_warmup_with_cuda_graphs_equals_eager_padded_stream(exact_float32):
    """The stepper's eager warm-up follows the padded schedule (outputs from step delay), then replays."""
    for name in ("coi3d_r50", "cox3d_xs"):
        model = _cuda_model(name)
        frames = torch.randn(model.first_output + 3 * model.stride, 1, 3, 32, 32, device="cuda")
        eager = [p for p in map(model.stream(warmup="padded").push, frames)]
        graphs = model.stream(cuda_graphs=True, warmup="padded")
        graphed = [graphs.push(f) for f in frames]
        assert graphs._stepper.captured
        assert [p is None for p in graphed] == [p is None for p in eager]
        assert next(p for p in graphed if p is not None).frame_index == model.delay
        for got, expected in zip(graphed, eager, strict=True):
            if expected is not None:
                assert got.stamp == expected.stamp
                torch.testing.assert_close(got.logits, expected.logits, rtol=1e-4, atol=1e-5)
