"""Every continual model: steps == its clip mode; clip mode with source padding == the regular model."""

import pytest
import torch
from helpers import randomise_batchnorm

import cozoo
from cozoo.continual import ContinualModule, Stream
from cozoo.continual.fastpath import fast_steps

CONTINUAL = cozoo.list_models("co*")
FRAME_SIZE = {"coc3d": 112}  # C3D's fc6 fixes its input size


@pytest.mark.parametrize("name", CONTINUAL)
def test_steps_equal_clip_and_transfer_matches_source(name):
    torch.manual_seed(0)
    config = cozoo.registry.get_config(name)
    model = cozoo.create_model(name, num_classes=5, pool_window=config.frames if "64" not in name else 16)
    assert isinstance(model, ContinualModule)
    randomise_batchnorm(model)
    model.eval()
    size = FRAME_SIZE.get(name, 32)
    frames = model.first_output + 2 * model.stride + 1
    x = torch.randn(1, 3, frames, size, size)
    with torch.no_grad():
        clip = model(x)
        steps = model.forward_steps(x)
        assert clip.shape[0] == 1 and clip.shape[1] == 5 and clip.shape[2] == 3
        torch.testing.assert_close(steps, clip, rtol=1e-4, atol=1e-4 * clip.abs().max().item())
        shortest = x[:, :, : model.first_output + 1]
        assert model(shortest).shape[2] == 1
        with pytest.raises(ValueError, match=f"clip of {model.first_output} frames is too short.*needs "
                           f"{model.first_output + 1} frames"):
            model(shortest[:, :, 1:])

        # a regular SlowFast picks its slow frames by linspace (its publisher's rule), a stream by stride
        stride = {"slow_frames": "stride"} if "slowfast" in name else {}
        source = cozoo.create_model(config.source, num_classes=5, **stride)
        source.load_state_dict(model.state_dict())
        source.eval()
        model.set_source_padding(True)
        y = x[:, :, : config.frames] if "64" not in name else x[:, :, :16]
        out = model(y)
        expected = source(y)
        torch.testing.assert_close(out.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", CONTINUAL)
def test_fast_steps_and_streams_equal_the_plain_eager_step(name):
    """The step fast paths (folded BatchNorm, channels-last depthwise caches, temporal depthwise convs as
    matrix products) and `Stream` (inference mode) give the plain eager step's outputs to 1e-5 relative."""
    torch.manual_seed(0)
    model = cozoo.create_model(name, num_classes=5, **({"pool_window": 8} if "64" in name else {}))
    randomise_batchnorm(model)
    model.eval()
    size = FRAME_SIZE.get(name, 24)
    x = torch.randn(1, 3, model.first_output + 2 * model.stride + 1, size, size)
    with torch.no_grad(), fast_steps(False):
        plain = model.forward_steps(x)
    model.reset()
    with torch.no_grad():
        fast = model.forward_steps(x)
    stream = model.stream()
    streamed = [p.logits for p in (stream.push(x[:, :, t]) for t in range(x.shape[2])) if p is not None]
    scale = plain.abs().max().item()
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(torch.stack(streamed, dim=2), plain, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize(
    "name,receptive_field,padding,delay",
    [("cox3d_s", 69, 28, 40), ("cox3d_m", 72, 28, 43), ("cox3d_l", 130, 57, 72)],
)
def test_cox3d_schedule_matches_co3d_paper(name, receptive_field, padding, delay):
    """Co3D paper: receptive fields 69/72/130, aggregated padding 28/28/57, steady after 40/43/72."""
    model = cozoo.create_model(name)
    assert (model.receptive_field, model.temporal_padding, model.delay) == (receptive_field, padding, delay)


def test_pool_window_keyword_extends_receptive_field_only():
    short, long = cozoo.create_model("cox3d_s"), cozoo.create_model("cox3d_s", pool_window=64)
    assert long.receptive_field - short.receptive_field == 64 - 13
    assert cozoo.create_model("cox3d_s_64").receptive_field == long.receptive_field
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match=f"pool_window must be a positive whole number .*, got {bad}"):
            cozoo.create_model("cox3d_s", pool_window=bad)


def test_stream_reports_frames_and_batches_parallel_streams():
    torch.manual_seed(0)
    model = cozoo.create_model("coi3d_r50", num_classes=3).eval()
    stream = model.stream()
    frames = torch.randn(model.first_output + 5, 2, 3, 16, 16)
    predictions = [p for p in (stream.push(f) for f in frames) if p is not None]
    first = model.first_output
    assert [p.frame_index for p in predictions] == [first, first + 2, first + 4]
    assert all(p.clip_first == p.frame_index - model.delay for p in predictions)
    assert predictions[0].logits.shape == (2, 3)
    # each of the two parallel streams equals streaming it alone
    alone = model.stream()
    single = [p for p in (alone.push(f[1:]) for f in frames) if p is not None]
    torch.testing.assert_close(single[-1].logits, predictions[-1].logits[1:], rtol=1e-4, atol=1e-5)


def test_stream_restarts_its_frame_count_when_the_model_is_reset_directly():
    model = cozoo.create_model("colate_fusion", num_classes=3, widths=(4, 8)).eval()
    stream = model.stream()
    frame = torch.randn(1, 3, 16, 16)
    for _ in range(3):
        stream.push(frame)
    assert model.in_stream and stream.frames_seen == 3
    model.reset()
    assert not model.in_stream
    outputs = [stream.push(frame) for _ in range(model.first_output + 1)]
    assert outputs[-1] is not None and outputs[-1].frame_index == model.first_output
    assert all(out is None for out in outputs[:-1])


def test_stream_with_cuda_graphs_needs_a_cuda_model():
    with pytest.raises(ValueError, match="cuda_graphs=True needs the model on a CUDA device"):
        Stream(cozoo.create_model("cox3d_xs").eval(), cuda_graphs=True)


def test_stream_rejects_training_mode():
    with pytest.raises(ValueError, match="eval"):
        cozoo.create_model("cox3d_xs").stream()


def test_stream_rejects_regular_model():
    from cozoo.continual import Stream

    with pytest.raises(TypeError, match="to_continual"):
        Stream(cozoo.create_model("x3d_xs"))


def test_zoo_model_streams_ten_thousand_frames_with_constant_state():
    """cocnn_lstm (per-frame CNN, LSTM state) and colate_fusion (running average window): 10,000 frames,
    the same state tensors throughout, outputs on every frame after warm-up."""
    torch.manual_seed(0)
    for name in ("cocnn_lstm", "colate_fusion"):
        model = cozoo.create_model(name, num_classes=3).eval()
        frames = torch.randn(50, 1, 3, 16, 16)
        stream = model.stream()
        outputs = 0
        for t in range(10_000):
            outputs += stream.push(frames[t % 50]) is not None
            if t == 100:
                before = _state_pointers(model)
        assert _state_pointers(model) == before and before
        assert outputs == 10_000 - model.first_output


def _state_pointers(model: torch.nn.Module) -> list[tuple[int, int]]:
    found = []
    for module in model.modules():
        for key in ("_state", "_hc", "_fifos"):
            value = module.__dict__.get(key)
            for tensor in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(tensor, torch.Tensor):
                    found.append((tensor.data_ptr(), tensor.nbytes))
    return found
