"""Prediction stamps (receptive field, source clip, centre) and the padded warm-up, for every continual model.

Stamps are checked against clip mode: the prediction of step t equals clip mode run on exactly the stamped
receptive field (one output). The padded warm-up is checked against an independent implementation of the
same network, continual-inference 1.2.4 (benchmarks/peers.py), which starts from the source's zero padding.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import randomise_batchnorm

import cozoo
from cozoo.continual import to_continual
from cozoo.continual.timing import FrameStamp, Timing, timing

ROOT = Path(__file__).resolve().parents[1]
CONTINUAL = cozoo.list_models("co*")
# Built with pool_window 16 here, cox3d_m_64 and cox3d_l_64 are cox3d_m and cox3d_l: not repeated below.
DISTINCT = [n for n in CONTINUAL if n not in ("cox3d_m_64", "cox3d_l_64")]
FRAME_SIZE = {"coc3d": 112}  # C3D's fc6 fixes its input size


def _model(name: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    config = cozoo.registry.get_config(name)
    window = config.frames if "64" not in name else 16
    model = cozoo.create_model(name, num_classes=3, pool_window=window)
    randomise_batchnorm(model)
    return model.eval().to(dtype)


@pytest.mark.parametrize("name", CONTINUAL)
def test_prediction_equals_clip_mode_on_its_stamped_frames(name):
    """Clip mode on frames first_frame..last_frame gives one output, the prediction. A strided model whose
    sampling phase starts past frame 0 (e.g. C3D: its first window starts at frame 2) drops that many
    leading frames of any clip: they are filled with noise, which must not matter. A clip one frame shorter
    is refused, so the field is tight."""
    torch.manual_seed(0)
    model = _model(name)
    size = FRAME_SIZE.get(name, 16)
    count = 1 if name == "coc3d" else 2  # C3D steps slowly at its fixed 112 px
    frames = torch.randn(model.first_output + (count - 1) * model.stride + 1, 1, 3, size, size)
    stream = model.stream()
    predictions = [p for p in (stream.push(f) for f in frames) if p is not None]
    assert len(predictions) == count
    assert timing(model).recurrent == (name == "cocnn_lstm")
    phase = model.first_output - model.receptive_field + 1 if name != "cocnn_lstm" else 0
    for p in predictions:
        assert p.last_frame == p.frame_index
        field = frames[p.first_frame : p.last_frame + 1].permute(1, 2, 0, 3, 4)
        noise = torch.randn(1, 3, phase, size, size)
        with torch.no_grad():
            out = model(torch.cat([noise, field], dim=2))
        assert out.shape[2] == 1 or name == "cocnn_lstm"  # one output (the LSTM emits one per frame)
        torch.testing.assert_close(p.logits, out[:, :, -1].reshape(p.logits.shape), rtol=1e-4, atol=1e-5)
        assert p.centre_frame == (p.clip_first + p.clip_last) / 2
        if name == "cocnn_lstm":  # recurrent: everything so far
            assert (p.first_frame, p.clip_first, p.clip_last) == (0, 0, p.frame_index)
            continue
        assert p.first_frame == p.frame_index - model.receptive_field + 1
        assert p.clip_first == p.frame_index - model.delay
        # the source clip is the pool window (in input frames) or, without a global pool, the stride
        pools = [m for m in model.modules() if isinstance(m, cozoo.continual.CoGlobalAvgPool3d)]
        expected = max(m.window * m.input_stride for m in pools) if pools else model.stride
        assert p.clip_last - p.clip_first + 1 == expected
        assert p.first_frame <= p.clip_first <= p.clip_last <= p.last_frame


def test_cox3d_s_stamps_match_the_co3d_alignment():
    """CoX3D-S at step t: receptive field t-68..t; it averages the pooled features of source clip t-40..t-28
    (13 frames), centred on t-34."""
    timing_s = timing(cozoo.create_model("cox3d_s"))
    assert timing_s.delay == 40
    stamp = timing_s.stamp(100)
    assert stamp == FrameStamp(first_frame=32, last_frame=100, clip_first=60, clip_last=72)
    assert stamp.centre_frame == 66
    late = timing(cozoo.create_model("colate_fusion")).stamp(7)  # averages frames 0..7
    assert (late.clip_first, late.clip_last, late.centre_frame) == (0, 7, 3.5)
    assert Timing(10, 2, 4).stamp(3).first_frame == 0  # a padded warm-up's field starts at frame 0


@pytest.mark.parametrize("name", DISTINCT)
def test_padded_warmup_emits_from_delay_and_equals_valid_from_first_output(name):
    torch.manual_seed(0)
    model = _model(name)
    size = FRAME_SIZE.get(name, 8)
    first, delay, stride = model.first_output, model.delay, model.stride
    steps = first + (1 if name == "coc3d" else stride + 1)
    x = torch.randn(1, 3, steps, size, size)
    with torch.no_grad():
        valid = model.forward_steps(x, warmup="valid")
        stream = model.stream(warmup="padded")
        assert (model.warmup, model.first_output, model.delay) == ("padded", delay, delay)
        padded = [p for p in (stream.push(x[:, :, t]) for t in range(steps)) if p is not None]
        model.reset(warmup="padded")
        plain = [model.forward_step(x[:, :, t]) for t in range(steps)]  # the plain step, as the peer test's
    assert [p.frame_index for p in padded] == list(range(delay, steps, stride))
    assert padded[0].clip_first == 0  # the first output pools the source clip that starts at frame 0
    # the stream's step (inference fast paths) equals the plain step, early outputs included
    early = torch.stack([plain[p.frame_index] for p in padded], dim=2)
    torch.testing.assert_close(torch.stack([p.logits for p in padded], dim=2), early, rtol=1e-5, atol=1e-6)
    late = [p.logits for p in padded if p.frame_index >= first]
    assert len(late) == valid.shape[2]
    torch.testing.assert_close(torch.stack(late, dim=2), valid, rtol=1e-5, atol=1e-6)
    model.reset()
    assert model.warmup == "valid" and model.first_output == first


def test_forward_steps_warmup_starts_a_new_stream():
    torch.manual_seed(0)
    model = _model("cox3d_xs")
    x = torch.randn(1, 3, model.delay + 3, 8, 8)
    with torch.no_grad():
        model.reset(warmup="padded")
        outputs = [model.forward_step(x[:, :, t]) for t in range(x.shape[2])]
        model.forward_step(x[:, :, 0])  # the stream goes on; warmup= starts it over
        again = model.forward_steps(x, warmup="padded")
    assert again.shape[2] == 3
    torch.testing.assert_close(again, torch.stack([o for o in outputs if o is not None], dim=2))


def test_reset_rejects_unknown_warmup_modes_and_unpaddable_layers():
    model = cozoo.create_model("cox3d_xs").eval()
    with pytest.raises(ValueError, match="warmup must be 'valid' or 'padded', got 'zeros'"):
        model.reset(warmup="zeros")
    with pytest.raises(ValueError, match="warmup must be"):
        model.stream(warmup="same")
    odd = to_continual(torch.nn.Sequential(torch.nn.Conv3d(2, 2, 1, padding=(1, 0, 0))))
    with pytest.raises(ValueError, match="padding 1 exceeds its receptive field less one"):
        odd.reset(warmup="padded")
    avg = torch.nn.AvgPool3d((3, 1, 1), 1, (1, 0, 0), count_include_pad=False)
    pool = to_continual(torch.nn.Sequential(avg))
    with pytest.raises(ValueError, match="count_include_pad=False"):
        pool.reset(warmup="padded")
    pool.reset()  # the valid warm-up still works


def test_padded_max_pool_ignores_its_padding_as_torch_does():
    source = torch.nn.Sequential(torch.nn.MaxPool3d((3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)))
    model = to_continual(source)
    x = -torch.rand(1, 2, 9, 3, 3) - 1  # all negative: a zero padding would win the max
    with torch.no_grad():
        steps = model.forward_steps(x, warmup="padded")
        expected = source(x)
    torch.testing.assert_close(steps, expected[:, :, : steps.shape[2]])


@pytest.fixture()
def peers(monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("continual")
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import peers

    return peers


def _peer_names() -> list[str]:
    return [n for n in DISTINCT if n not in ("cocnn_lstm", "coslowfast_r50", "coslowfast_r50_4x16")]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "coc3d" else n for n in _peer_names()]
)
def test_padded_warmup_equals_continual_inference_step_for_step(name, peers):
    """continual-inference 1.2.4 emits from step `delay`, its state standing in for the source's zero
    padding: the same early outputs, step for step, in float64 (SlowFast and the LSTM have no peer)."""
    torch.manual_seed(0)
    ours = _model(name, torch.float64)
    config = cozoo.registry.get_config(name)
    source = cozoo.create_model(config.source, num_classes=3)
    source.load_state_dict(ours.state_dict())
    source.eval().double()
    assert peers.unsupported_reason(source) is None
    window = peers.global_pool_window(ours) if name != "coc3d" else 1  # C3D has no global pool
    peer = peers.to_co_inference(source, window)
    size = FRAME_SIZE.get(name, 8)
    valid_first = ours.first_output
    # every early output and the first valid one (C3D, slow at its fixed 112 px in float64: the first)
    steps = valid_first + 1 if name != "coc3d" else ours.delay + 1
    x = torch.randn(1, 3, steps, size, size, dtype=torch.float64)
    ours.reset(warmup="padded")
    peers.reset_peer(peer)
    compared = 0
    with torch.no_grad():
        for t in range(steps):
            mine, theirs = ours.forward_step(x[:, :, t]), peer.forward_step(x[:, :, t])
            assert (mine is None) == (not isinstance(theirs, torch.Tensor)), f"step {t}"
            if mine is not None:
                scale = mine.abs().max().item()
                torch.testing.assert_close(mine, theirs.reshape(mine.shape), rtol=1e-6, atol=1e-6 * scale)
                compared += 1
    assert compared == (steps - 1 - ours.delay) // ours.stride + 1


def _python_state(model: torch.nn.Module) -> list[object]:
    """What a CUDA graph cannot capture: step counters, merge counters, and which buffers hold the state."""
    state: list[object] = []
    for module in model.modules():
        for key in ("_steps", "_trigger_seen"):
            if key in module.__dict__:
                state.append((key, module.__dict__[key]))
        for key in ("_state", "_fifos"):
            value = module.__dict__.get(key)
            tensors = value if isinstance(value, list) else [value]
            state.append((key, [t.data_ptr() if isinstance(t, torch.Tensor) else t for t in tensors]))
    return state


@pytest.mark.parametrize("name", ["coi3d_r50", "cor2plus1d_18_8f"])
def test_padded_stream_is_periodic_after_the_graph_steppers_eager_steps(name):
    """CudaGraphStepper steps eagerly until the warm-up mode's first output plus one period, then captures
    one graph per phase: from there on the Python-side state must repeat with the period and no buffer may
    be reallocated (checked on CPU, where the capture itself cannot run)."""
    torch.manual_seed(0)
    model = _model(name)
    model.reset(warmup="padded")
    eager, period = model.first_output + model.stride, model.stride
    x = torch.randn(1, 3, eager + 2 * period, 8, 8)
    snapshots = []
    with torch.no_grad():
        for t in range(x.shape[2]):
            if t >= eager:
                snapshots.append(_python_state(model))
            model.forward_step(x[:, :, t])
    for phase in range(period):
        assert snapshots[phase] == snapshots[phase + period]
