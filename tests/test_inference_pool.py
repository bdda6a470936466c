"""StreamPool: every stream of the pool equals the same stream run alone through model.stream(), whatever
the other streams do (open, close, reset, skip pushes), in both warm-up modes and with streams of both
modes in one pool; bad input is refused without touching any stream."""

from __future__ import annotations

import copy
import gc

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import cozoo
from cozoo.continual import StreamError
from cozoo.continual.state import StateLayout
from cozoo.inference.pool import SlotError, StreamPool
from cozoo.layers.blocks import Flatten, GlobalAvgPool3d

SIZE = 16
SLOTS = 5
_MODELS: dict[str, nn.Module] = {}


def zoo_model(name: str) -> nn.Module:
    """One eval-mode model per name for the whole module (built once: the big ones take seconds)."""
    if name not in _MODELS:
        torch.manual_seed(0)
        model = cozoo.create_model(name, num_classes=4).eval()
        for module in model.modules():  # non-trivial BatchNorm, so every path carries signal
            if isinstance(module, nn.BatchNorm3d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
        _MODELS[name] = model
    return _MODELS[name]


def tiny_strided() -> nn.Module:
    """A small continual model with temporal strides 2 and 2 (period 4) and a global pool."""
    torch.manual_seed(0)
    source = nn.Sequential(
        nn.Conv3d(3, 4, 3, stride=(2, 1, 1), padding=1), nn.ReLU(),
        nn.Conv3d(4, 6, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)), nn.ReLU(),
        GlobalAvgPool3d(), Flatten(), nn.Linear(6, 3),
    )
    return cozoo.to_continual(source, pool_window=8).eval()


# One action per push: (what, which open stream, bit mask of the open streams that get a frame).
ACTIONS = st.sampled_from(["none"] * 8 + ["open"] * 3 + ["close", "reset"])
SCHEDULE_STEP = st.tuples(ACTIONS, st.integers(0, SLOTS - 1), st.integers(0, 2**SLOTS - 1))


def staggered(pushes: int) -> list[tuple[str, int, int]]:
    """Streams opened on consecutive pushes (every stride phase), one fed every other push, one reset.
    In a ``"mixed"`` run, the streams opened second and fourth are padded."""
    schedule = [("open", i, 2**SLOTS - 1) for i in range(SLOTS)]
    schedule += [("none", 0, 2**SLOTS - 1)] * (pushes - SLOTS)
    for i in range(SLOTS, pushes, 2):
        schedule[i] = ("none", 0, 2**SLOTS - 1 - 0b10)
    schedule[pushes // 2] = ("reset", 4, 2**SLOTS - 1)
    return schedule


def run_schedule(model: nn.Module, schedule: list[tuple[str, int, int]], seed: int = 0,
                 warmup: str = "valid") -> int:
    """Run ``schedule`` on a pool and on one lone stream per pool stream; assert they agree; returns the
    number of predictions compared. ``warmup``: the pool's mode, or ``"mixed"``: a valid pool whose
    streams open (and reset) in the mode ``which`` picks (odd: padded)."""
    generator = torch.Generator().manual_seed(seed)
    reference = copy.deepcopy(model)
    pool = StreamPool(model, capacity=SLOTS, warmup="valid" if warmup == "mixed" else warmup)
    alone: dict[int, object] = {}
    compared = 0
    classes = [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features
    for what, which, mask in schedule:
        live = pool.live
        mode = ("padded" if which % 2 else "valid") if warmup == "mixed" else None
        if what == "open" and len(live) < SLOTS:
            stream_id = pool.open(warmup=mode)
            alone[stream_id] = copy.deepcopy(reference).stream(warmup=pool.warmup_of(stream_id))
            assert pool.warmup_of(stream_id) == (mode or warmup)
        elif what == "close" and live:
            stream_id = live[which % len(live)]
            pool.close(stream_id)
            del alone[stream_id]
        elif what == "reset" and live:
            stream_id = live[which % len(live)]
            pool.reset(stream_id, warmup=mode)
            if mode is None:
                alone[stream_id].reset()  # the lone stream restarts in its own mode
            else:
                alone[stream_id] = copy.deepcopy(reference).stream(warmup=mode)
        fed = [s for i, s in enumerate(pool.live) if mask >> i & 1]
        frames = {s: torch.randn(3, SIZE, SIZE, generator=generator) for s in fed}
        got = pool.push(frames)
        assert set(got) == set(fed)
        for stream_id, frame in frames.items():
            expected = alone[stream_id].push(frame[None])
            prediction = got[stream_id]
            assert (prediction is None) == (expected is None), (stream_id, alone[stream_id].frames_seen)
            if expected is not None:
                assert prediction.stamp == expected.stamp  # frame index, receptive field, source clip
                assert prediction.logits.shape == expected.logits.shape == (1, classes)
                scale = expected.logits.abs().max().item()
                torch.testing.assert_close(prediction.logits, expected.logits, rtol=1e-5, atol=1e-5 * scale)
                compared += 1
    return compared


def check_alone(got: dict, frames: dict, alone: dict, atol: float = 1e-6) -> int:
    """Push each stream's frame to its lone stream (``alone[id]``) and assert the pool's prediction
    ``got[id]`` equals it: ``None`` exactly where the lone stream gives ``None``, else the same stamp and
    logits to 1e-5 relative. Returns how many predictions were compared."""
    compared = 0
    for stream_id, frame in frames.items():
        expected = alone[stream_id].push(frame[None])
        assert (got[stream_id] is None) == (expected is None), stream_id
        if expected is not None:
            assert got[stream_id].stamp == expected.stamp
            torch.testing.assert_close(got[stream_id].logits, expected.logits, rtol=1e-5, atol=atol)
            compared += 1
    return compared


def pushes_for(model: nn.Module, warmup: str = "valid") -> int:
    """Pushes enough for a stream opened last to predict several times (mixed pools: as valid)."""
    model.reset(warmup=warmup)
    first = model.first_output
    model.reset()
    return max(60, first + 3 * model.stride + SLOTS + 4)


ZOO = [("colate_fusion", 6), ("cox3d_xs", 3), ("coi3d_r50", 2), ("coslowfast_r50", 1), ("cor2plus1d_18", 1)]


@pytest.mark.parametrize("name,examples", ZOO)
def test_every_stream_equals_itself_alone(name, examples):
    model = zoo_model(name)
    pushes = pushes_for(model)
    assert run_schedule(model, staggered(pushes)) >= 2 * SLOTS  # streams at every stride phase predict

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(SCHEDULE_STEP, min_size=pushes, max_size=pushes), st.integers(0, 2**16))
    def check(schedule, seed):
        run_schedule(model, schedule, seed)

    check()


@pytest.mark.parametrize("name,examples", ZOO)
def test_every_padded_stream_equals_itself_alone(name, examples):
    """Padded warm-up (Co3D's early outputs): a padded pool on the staggered schedule, then random schedules
    with streams of both modes in one pool (each open or reset picks its mode). Each stream emits from its
    own mode's first output, stamped with its own frames."""
    model = zoo_model(name)
    assert run_schedule(model, staggered(pushes_for(model, "padded")), warmup="padded") >= 2 * SLOTS
    pushes = pushes_for(model)
    assert run_schedule(model, staggered(pushes), warmup="mixed") >= 2 * SLOTS

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(SCHEDULE_STEP, min_size=pushes, max_size=pushes), st.integers(0, 2**16))
    def check(schedule, seed):
        run_schedule(model, schedule, seed, warmup="mixed")

    check()


def test_strided_tiny_model_random_schedules():
    """Many random schedules on a small model of period 4 (more examples than the zoo models afford)."""
    model = tiny_strided()

    @settings(max_examples=25, deadline=None, derandomize=True, database=None)
    @given(st.lists(SCHEDULE_STEP, min_size=60, max_size=60), st.integers(0, 2**16))
    def check(schedule, seed):
        run_schedule(model, schedule, seed)

    check()
    assert run_schedule(model, staggered(60)) > 0
    for warmup in ("padded", "mixed"):
        assert run_schedule(model, staggered(60), warmup=warmup) > 0

    @settings(max_examples=15, deadline=None, derandomize=True, database=None)
    @given(st.lists(SCHEDULE_STEP, min_size=60, max_size=60), st.integers(0, 2**16),
           st.sampled_from(["padded", "mixed"]))
    def check_padded(schedule, seed, warmup):
        run_schedule(model, schedule, seed, warmup)

    check_padded()


def test_recurrent_model_streams_equal_alone():
    """The LSTM's state is replaced (not updated in place) on its first step: masked all the same."""
    torch.manual_seed(0)
    model = cozoo.create_model("cocnn_lstm", num_classes=4).eval()
    assert run_schedule(model, staggered(12)) > 0
    assert run_schedule(model, staggered(12), warmup="mixed") > 0


def negative_max_pool() -> nn.Module:
    """A temporal max pool with padding over negative maps: a padded stream's first outputs take the max
    over real frames only (its cache starts at -inf), which zeros would replace by 0."""
    torch.manual_seed(0)
    conv = nn.Conv3d(3, 4, (1, 3, 3), padding=(0, 1, 1))
    with torch.no_grad():
        conv.bias.fill_(-20.0)  # every activation below 0
    source = nn.Sequential(
        conv, nn.MaxPool3d((3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)),
        nn.Conv3d(4, 5, (3, 1, 1), padding=(1, 0, 0)),
        GlobalAvgPool3d(), Flatten(), nn.Linear(5, 3),
    )
    return cozoo.to_continual(source, pool_window=2).eval()


def test_reopened_row_starts_from_the_modes_initial_state():
    """A row that held another stream (or NaN) starts a padded stream exactly as a lone one: the max
    pool's cache rows are -inf again, the convolutions' zero; a valid stream on the next row alongside."""
    model = negative_max_pool()
    reference = copy.deepcopy(model)
    zero_start = copy.deepcopy(reference)
    for module in zero_start.modules():  # the same model if its max pool started from zeros
        if type(module).__name__ == "CoMaxPool3d":
            module.initial_state_value = lambda: 0.0
    generator = torch.Generator().manual_seed(1)
    frames = torch.randn(16, 3, 6, 6, generator=generator)
    pool = StreamPool(model, capacity=2, warmup="padded")
    first = pool.open()
    for t in range(5):
        pool.push({first: torch.full((3, 6, 6), float("nan")) if t % 2 else frames[t]})
    pool.close(first)  # its row keeps its state (NaN included)
    padded, valid = pool.open(), pool.open(warmup="valid")
    lone = {padded: copy.deepcopy(reference).stream(warmup="padded"),
            valid: copy.deepcopy(reference).stream()}
    zero_lone = zero_start.stream(warmup="padded")
    compared = differ = 0
    for t in range(16):
        pushed = {padded: frames[t], valid: frames[t]}
        got = pool.push(pushed)
        compared += check_alone(got, pushed, lone, atol=1e-5)
        zero = zero_lone.push(frames[t][None])
        differ += zero is not None and not torch.allclose(zero.logits, got[padded].logits, atol=1e-3)
    assert compared == 7 + 5 and differ > 0  # and zeros in the max pool's cache would have been wrong


def test_warmup_modes_refused_clearly():
    model = tiny_strided()
    with pytest.raises(ValueError, match="warmup must be 'valid' or 'padded', got 'zeros'"):
        StreamPool(model, warmup="zeros")
    pool = StreamPool(model, capacity=3)
    a = pool.open()
    pool.push({a: torch.randn(3, 8, 8)})
    before = state_copy(pool)
    with pytest.raises(ValueError, match="warmup must be 'valid' or 'padded', got 'same'"):
        pool.open(warmup="same")
    with pytest.raises(ValueError, match="warmup must be 'valid' or 'padded', got 'zero'"):
        pool.reset(a, warmup="zero")
    assert pool.live == [a] and pool.frames_seen(a) == 1 and pool.warmup_of(a) == "valid"
    assert all(torch.equal(t, state_copy(pool)[k]) for k, t in before.items())
    assert (pool.first_output_of("valid"), pool.first_output_of("padded")) == (11, 7)
    # A model whose source padding cannot be stood in for has no padded warm-up: said at once.
    no_padding = cozoo.to_continual(nn.Sequential(
        nn.Conv3d(3, 2, 1), nn.AvgPool3d((3, 1, 1), stride=1, padding=(1, 0, 0), count_include_pad=False),
        GlobalAvgPool3d(), Flatten(), nn.Linear(2, 2)), pool_window=2).eval()
    with pytest.raises(ValueError, match="count_include_pad=False.*no padded warm-up"):
        StreamPool(no_padding, warmup="padded")
    pool = StreamPool(no_padding, capacity=2)
    with pytest.raises(ValueError, match="no padded warm-up"):
        pool.open(warmup="padded")
    assert pool.live == []


def state_copy(pool: StreamPool) -> dict:
    return {key: tensor.narrow(dim, 0, 2).clone() for key, tensor, dim in StateLayout(pool.model).tensors()}


def test_bad_input_is_refused_and_leaves_every_stream_untouched():
    model = tiny_strided()
    alone_model = copy.deepcopy(model)
    pool = StreamPool(model, capacity=3)
    a, b = pool.open(), pool.open()
    alone = {a: copy.deepcopy(alone_model).stream(), b: copy.deepcopy(alone_model).stream()}
    generator = torch.Generator().manual_seed(0)

    def frame() -> torch.Tensor:
        return torch.randn(3, 8, 8, generator=generator)

    def push_both(steps: int) -> None:
        for _ in range(steps):
            frames = {a: frame(), b: frame()}
            check_alone(pool.push(frames), frames, alone)

    push_both(9)
    c = pool.open()
    pool.close(c)
    before = state_copy(pool)
    seen = (pool.frames_seen(a), pool.frames_seen(b))
    bad_pushes = [
        ({a: frame(), c: frame()}, SlotError, f"stream {c} is closed"),
        ({a: frame(), 99: frame()}, SlotError, "unknown stream id 99"),
        ({a: frame(), b: torch.randn(3, 8, 9)}, StreamError, r"\(3, 8, 9\), but the pool takes \(3, 8, 8\)"),
        ({a: frame(), b: torch.randn(4, 8, 8)}, StreamError, "expected 3 channels"),
        ({a: frame(), b: torch.randn(1, 3, 8, 8)}, StreamError, r"expected one frame \(C, H, W\)"),
        ({a: frame(), b: frame().double()}, StreamError, "float64 on cpu but the model is torch.float32"),
        ({a: frame(), b: torch.empty(3, 8, 8, device="meta")}, StreamError, "on meta but the model is"),
        ({a: frame(), b: "frame"}, StreamError, "expected a frame tensor"),
    ]
    for frames, error, message in bad_pushes:
        with pytest.raises(error, match=message):
            pool.push(frames)
    with pytest.raises(TypeError, match="mapping"):
        pool.push([frame()])  # type: ignore[arg-type]
    with pytest.raises(SlotError, match=f"stream {c} is closed"):
        pool.reset(c)
    with pytest.raises(SlotError, match="unknown stream id"):
        pool.close(42)
    pool.open()
    with pytest.raises(SlotError, match="the pool is full: all 3 streams are open"):
        pool.open()
    assert (pool.frames_seen(a), pool.frames_seen(b)) == seen
    after = state_copy(pool)
    assert before.keys() == after.keys()
    for key, tensor in before.items():
        assert torch.equal(tensor, after[key]), key  # rows of a and b
    push_both(12)  # and they go on exactly as alone


def test_stream_without_a_frame_keeps_its_state_and_free_rows_never_leak():
    """A stream fed at half the rate of another equals it alone; NaN frames in a free row change nothing."""
    model = tiny_strided()
    reference = copy.deepcopy(model)
    pool = StreamPool(model, capacity=3)
    fast, slow, spare = pool.open(), pool.open(), pool.open()
    pool.push({spare: torch.full((3, 8, 8), float("nan"))})
    pool.close(spare)  # its row keeps NaN state
    alone = {fast: copy.deepcopy(reference).stream(), slow: copy.deepcopy(reference).stream()}
    outputs = 0
    for t in range(40):
        frames = {fast: torch.randn(3, 8, 8)}
        if t % 2:
            frames[slow] = torch.randn(3, 8, 8)
        got = pool.push(frames)
        assert all(torch.isfinite(p.logits).all() for p in got.values() if p is not None)
        outputs += check_alone(got, frames, alone)  # the stamp holds each stream's own frame index
    assert outputs > 10
    assert pool.frames_seen(slow) == 20 and pool.frames_seen(fast) == 40


def test_memory_is_constant_over_ten_thousand_pushes():
    model = tiny_strided()
    pool = StreamPool(model, capacity=4)
    generator = torch.Generator().manual_seed(0)
    frames = torch.randn(16, 3, 8, 8, generator=generator)

    def run(pushes: int, start: int) -> None:
        for t in range(start, start + pushes):
            if t % 7 == 0 and len(pool.live) == 4:
                pool.close(pool.live[t % 4])
            if t % 3 == 0 and len(pool.live) < 4:
                pool.open(warmup=("valid", "padded")[t % 2])
            if t % 11 == 0 and pool.live:
                pool.reset(pool.live[0])
            pool.push({s: frames[(t + s) % 16] for i, s in enumerate(pool.live) if (t + i) % 5})

    run(500, 0)  # every phase seen, every buffer allocated

    def census() -> tuple[int, int, set[int]]:
        """Python objects tracked by the GC, live tensors, and the state's storages."""
        gc.collect()
        objects = gc.get_objects()
        tensors = sum(isinstance(o, torch.Tensor) for o in objects)
        storages = {t.untyped_storage().data_ptr() for _, t, _ in StateLayout(model).tensors()}
        return len(objects), tensors, storages

    objects, tensors, storages = census()
    run(10_000, 500)
    objects_after, tensors_after, storages_after = census()
    assert objects_after - objects < 50, f"{objects_after - objects} more Python objects"
    assert tensors_after == tensors
    assert storages_after == storages  # state updated in place, never reallocated
    phases = {mode: pool.first_output_of(mode) + 2 * model.stride for mode in ("valid", "padded")}
    assert {m: sum(k[0] == m for k in pool._counters) for m in phases} == phases  # one per phase, no more


def test_pool_refuses_training_models_and_cpu_cuda_graphs():
    model = tiny_strided()
    with pytest.raises(ValueError, match="cuda_graphs=True needs the model on a CUDA device"):
        StreamPool(model, cuda_graphs=True)
    with pytest.raises(ValueError, match="capacity must be a positive int"):
        StreamPool(model, capacity=0)
    with pytest.raises(ValueError, match="training mode"):
        StreamPool(model.train())
    with pytest.raises(TypeError, match="is not continual"):
        StreamPool(nn.Linear(2, 2))


def test_model_reset_outside_the_pool_is_an_error():
    model = tiny_strided()
    pool = StreamPool(model, capacity=2)
    stream_id = pool.open()
    pool.push({stream_id: torch.randn(3, 8, 8)})
    model.reset()
    with pytest.raises(StreamError, match="reset or stepped outside this pool"):
        pool.push({stream_id: torch.randn(3, 8, 8)})
    assert pool.push({}) == {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_pool_equals_streams_alone():
    model = tiny_strided().cuda()
    reference = copy.deepcopy(model)
    pool = StreamPool(model, capacity=4, cuda_graphs=True)
    alone = {}
    for t in range(30):
        if t < 4:  # valid and padded streams, warm-up phases eager, settled ones replayed per mode
            mode = ("valid", "padded")[t % 2]
            alone[pool.open(warmup=mode)] = copy.deepcopy(reference).stream(warmup=mode)
        frames = {s: torch.randn(3, 8, 8, device="cuda") for s in pool.live if (t + s) % 3}
        check_alone(pool.push(frames), frames, alone)
    assert {mode for mode, _ in pool._graphs} == {"valid", "padded"}
