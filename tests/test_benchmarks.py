"""Smoke tests of the benchmark code path (benchmarks/): tiny model, few iterations, no timing assertions."""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

import cozoo
from cozoo.continual.fastpath import fast_steps

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def bench(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import measure, peers, run

    return measure, peers, run




def test_budget_rejects_nonsense(bench) -> None:
    measure, _, _ = bench
    with pytest.raises(ValueError, match="invalid budget"):
        measure.Budget(min_iters=5, max_iters=2)


def test_latency_covers_whole_periods(bench) -> None:
    measure, _, _ = bench
    calls: list[int] = []
    budget = measure.Budget(warmup=1, min_iters=2, max_iters=4, seconds=10.0)
    latency = measure.measure_latency(calls.append, torch.device("cpu"), budget, period=3)
    assert latency.samples == 4 and latency.period == 3
    assert calls == list(range(3 + 4 * 3))  # warm-up period, then 4 timed periods, indices counted on
    assert 0 <= latency.median_ms <= latency.worst_phase_ms * 3
    fps = measure.measure_throughput(lambda i: None, torch.device("cpu"), budget, outputs_per_call=8)
    assert fps.calls == 4 and fps.outputs_per_s > 0


def _tiny_regular() -> nn.Module:
    """Every module type the peer converter handles, with a temporally strided residual block."""
    from cozoo.layers.blocks import Flatten, GlobalAvgPool3d, Residual, SqueezeExcitation

    branch = nn.Sequential(OrderedDict(
        conv_a=nn.Conv3d(4, 6, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0), bias=False),
        bn_a=nn.BatchNorm3d(6), relu_a=nn.ReLU(),
        conv_b=nn.Conv3d(6, 6, 3, padding=1, groups=6), se=SqueezeExcitation(6, 2), swish=nn.SiLU(),
    ))
    shortcut = nn.Sequential(nn.Conv3d(4, 6, 1, stride=(2, 1, 1), bias=False), nn.BatchNorm3d(6))
    return nn.Sequential(
        nn.Conv3d(3, 4, (5, 3, 3), padding=(2, 1, 1)), nn.BatchNorm3d(4), nn.ReLU(),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        Residual(branch, shortcut, nn.ReLU()),
        Residual(nn.Sequential(nn.Conv3d(6, 6, (3, 1, 1), padding=(1, 0, 0)), nn.Identity()), None, None),
        nn.AvgPool3d((1, 2, 2)), GlobalAvgPool3d(), nn.Dropout(0.5), Flatten(), nn.Linear(6, 5),
    ).eval()


def test_peer_steps_equal_ours_in_steady_state(bench) -> None:
    pytest.importorskip("continual")
    _, peers, _ = bench
    from cozoo.continual import to_continual

    torch.manual_seed(0)
    regular = _tiny_regular().double()
    for module in regular.modules():  # non-trivial batch-norm statistics
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    ours = to_continual(regular, pool_window=8).eval()
    peer = peers.to_co_inference(regular, peers.global_pool_window(ours))
    frames = torch.randn(2, 3, ours.first_output + 4 * ours.stride, 12, 12, dtype=torch.float64)
    result = peers.check_equivalence(ours, peer, frames)
    assert result.compared >= 4
    assert result.max_abs_output > 1e-3
    assert result.max_abs_diff < 1e-12


def test_peer_rejects_slowfast_and_unknown_modules(bench) -> None:
    _, peers, _ = bench
    from cozoo.layers.pathways import SplitPathways

    assert peers.unsupported_reason(nn.Sequential(SplitPathways(4))) == peers.SLOWFAST_REASON
    assert "GELU" in peers.unsupported_reason(nn.Sequential(nn.GELU()))
    assert peers.unsupported_reason(_tiny_regular()) is None
    with pytest.raises(peers.PeerUnsupported, match="GELU"):
        peers.to_co_inference(nn.Sequential(nn.GELU()), pool_window=1)


def _smoke_settings(run, peer: bool):
    from benchmarks.measure import Budget

    tiny = Budget(warmup=0, min_iters=1, max_iters=2, seconds=0.01)
    return run.Settings(device="cpu", models=("x3d_xs",), crop=32, frames=None, batches=(1, 2), latency=tiny,
                        throughput=tiny, check_crop=16 if peer else 0, peer=peer, note="test")


@pytest.mark.parametrize("fuse_bn", [False, True])
def test_run_writes_results_and_plot(bench, one_thread, tmp_path: Path, fuse_bn: bool) -> None:
    _, peers, run = bench
    with_peer = peers.available() is not None
    settings = dataclasses.replace(_smoke_settings(run, with_peer), fuse_bn=fuse_bn)
    result = run.run(settings, tmp_path, log=lambda line: None)
    saved = json.loads((tmp_path / "cpu.json").read_text())
    assert saved["models"].keys() == {"x3d_xs"} and (tmp_path / "cpu.png").stat().st_size > 0
    entry = result["models"]["x3d_xs"]
    assert entry["flops"]["reduction"] > 1
    expected = {"step", "clip", "peer"} if with_peer else {"step", "clip"}
    assert entry["modes"].keys() == expected
    for mode in expected:
        assert entry["modes"][mode]["latency_ms"] > 0
        assert set(entry["modes"][mode]["frames_per_s"]) == {"1", "2"}
    assert entry["speedup"]["step_vs_clip"] > 0
    ops = entry["compute_ops_per_frame"]
    assert ops.keys() == ({"step", "clip", "peer"} if with_peer else {"step", "clip"})
    assert ops["step"] > 0 and ops["clip"] > 0 and (not with_peer or ops["peer"] > ops["step"])
    assert saved["settings"]["fuse_bn"] is fuse_bn
    assert any(isinstance(m, nn.BatchNorm3d) for m in run.cozoo.create_model("x3d_xs").modules())
    if with_peer:
        assert entry["peer"]["equivalence"]["max_abs_diff"] < 1e-10
        assert entry["speedup"]["step_vs_peer"] > 0
    assert saved["settings"]["crop"] == 32 and saved["versions"]["torch"] == torch.__version__
    assert saved["versions"]["git_commit"] is None or len(saved["versions"]["git_commit"]) >= 40


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_modes_are_checked_then_timed_after_capture(bench, tmp_path: Path) -> None:
    """On a GPU: the replay check passes (TF32 off, the replay equals eager steps), the timed steppers are
    captured before timing (their memory holds the graphs' pools), and ratios come out for both."""
    _, _, run = bench
    settings = dataclasses.replace(_smoke_settings(run, False), device="cuda", batches=(1,),
                                   compile_batches=(1,), compile_models=("x3d_xs",))
    entry = run.run(settings, tmp_path, log=lambda line: None, plot=False)["models"]["x3d_xs"]
    for mode in ("step_graph", "step_graph_compiled"):
        check = entry["modes"][mode]["replay_check"]["1"]
        assert check["passed"] and check["error_vs_step_change"] < 1e-3, (mode, check)
        assert entry["modes"][mode]["peak_memory_mib"]["1"] > 0
        assert entry["speedup"][f"{mode}_vs_clip"] > 0
    assert entry["modes"]["clip"]["latency_repeat_ms"] > 0


def test_missing_peer_library_is_reported(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    _, peers, run = bench
    monkeypatch.setattr(peers, "available", lambda: None)
    model, entry = run.peer_entry(_tiny_regular(), nn.Identity(), 8, _smoke_settings(run, True),
                                  torch.device("cpu"))
    assert model is None and not entry["supported"] and "not installed" in entry["reason"]


def test_merge_keeps_each_models_latest_run_and_says_which(bench, tmp_path: Path) -> None:
    from benchmarks import merge

    def fake_run(date: str, models: dict[str, float]) -> dict:
        entries = {name: {"flops": {"reduction": 4.0}, "speedup": {"step_vs_clip": value}, "peer": {}}
                   for name, value in models.items()}
        return {"date": date, "device": {"type": "cuda", "name": "GPU"}, "versions": {}, "settings": {},
                "models": entries}

    first, second = fake_run("2026-01-01", {"a": 1.0, "b": 2.0}), fake_run("2026-01-02", {"b": 3.0})
    paths = []
    for name, result in (("one.json", first), ("two.json", second)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(result))
    merge.main([str(tmp_path / "merged.json"), *map(str, paths)])
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert merged["models"]["a"]["run"] == "one.json" and merged["models"]["b"]["run"] == "two.json"
    assert merged["models"]["b"]["speedup"]["step_vs_clip"] == 3.0
    assert [r["models"] for r in merged["runs"]] == [["a", "b"], ["b"]]
    assert (tmp_path / "merged.png").stat().st_size > 0
    with pytest.raises(ValueError, match="different device types"):
        merge.merge_runs([("cpu", {**first, "device": {"type": "cpu"}}), ("gpu", second)])
    with pytest.raises(ValueError, match="run labels must tell the runs apart"):
        merge.merge_runs([("cuda.json", first), ("cuda.json", second)])
    other_gpu = {**second, "device": {"type": "cuda", "name": "another GPU"}}
    with pytest.raises(ValueError, match="runs differ in devices"):
        merge.merge_runs([("one", first), ("two", other_gpu)])
    assert merged["settings"]["note"].startswith("merged runs")
    for folder, result in (("x", first), ("y", second)):  # two runs saved under the same file name
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "cuda.json").write_text(json.dumps(result))
    same_names = [str(tmp_path / folder / "cuda.json") for folder in ("x", "y")]
    merge.main([str(tmp_path / "both.json"), *same_names])
    assert json.loads((tmp_path / "both.json").read_text())["models"]["b"]["run"] == same_names[1]
    with pytest.raises(SystemExit, match="the same run file is given twice"):
        merge.main([str(tmp_path / "again.json"), same_names[0], same_names[0]])


def test_ptflops_counts_a_little_more_than_cozoo_and_mostly_per_step(bench) -> None:
    """The Co3D table's convention (ptflops) adds ReLU, pooling and biases to the MACs cozoo counts; those
    weigh more in a cheap per-frame step than in a clip, hence the larger per-frame gap."""
    _, peers, _ = bench
    pytest.importorskip("ptflops")
    if peers.available() is None:
        pytest.skip("continual-inference is not installed")
    from benchmarks import flops_conventions

    r = flops_conventions.compare("x3d_xs", 4, crop=64)
    assert r["clip_co3d_table"] is None and r["step_co3d_table"] is None  # the table is for crop 160
    assert 1.0 < r["clip_ptflops"] / r["clip_cozoo"] < 1.03
    assert r["clip_ptflops"] / r["clip_cozoo"] < r["step_ptflops"] / r["step_cozoo"] < 1.1


def test_replay_check_sees_a_stepper_that_disagrees_with_eager_steps(bench) -> None:
    """On the benchmark's own random weights (outputs vary little from frame to frame), a replay that
    repeats its first output or lags one output behind fails; one equal to eager steps passes."""
    _, _, run = bench
    import cozoo

    class EagerStepper:  # the interface of CudaGraphStepper, stepping eagerly (CPU)
        def __init__(self, model: nn.Module, fault: str | None) -> None:
            self.model, self.fault = model.eval(), fault
            self.period, self.warmup = int(model.stride), int(model.first_output) + int(model.stride)
            self.kept: torch.Tensor | None = None
            model.reset()

        def step(self, frame: torch.Tensor) -> torch.Tensor | None:
            out = self.model.forward_step(frame)
            if out is None or self.fault is None:
                return out
            shown = out if self.kept is None else self.kept
            if self.fault == "lag" or self.kept is None:
                self.kept = out.clone()
            return shown

    torch.manual_seed(0)
    model = cozoo.create_model("cox3d_xs", num_classes=3)
    example = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        exact = run.replay_vs_eager(EagerStepper(model, None), example)
        assert exact["error_vs_step_change"] == 0.0 and exact["passed"] and exact["outputs"] >= 8
        for fault in ("stale", "lag"):
            check = run.replay_vs_eager(EagerStepper(model, fault), example)
            assert check["error_vs_step_change"] >= 1.0 and not check["passed"]
    failed = {"latency_ms": 1.0, "replay_check": {"1": {"passed": False}}}
    modes = {"clip": {"latency_ms": 8.0, "latency_repeat_ms": 4.0}, "step": {"latency_ms": 2.0},
             "step_graph": failed}
    speedup = run.speedups(modes, reduction=4.0)
    assert "step_graph_vs_clip" not in speedup and speedup["step_vs_clip"] == 2.0  # the faster clip counts
    assert speedup["best_step_vs_clip_over_flops_reduction"] == 0.5


def test_peak_memory_restart_forgets_set_up_work(bench) -> None:
    measure, _, _ = bench
    if not measure._reset_cpu_peak():
        pytest.skip("this system cannot reset the peak RSS")
    with measure.track_peak_memory(torch.device("cpu")) as peak:
        setup = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched, then freed
        del setup
        measure._release_free_memory()
        peak.restart()
        kept = torch.ones(8 * 2**20 // 4)  # 8 MiB
    assert peak.mib is not None and 4 < peak.mib < 40
    del kept


def test_compute_ops_leave_out_views_and_allocations_and_see_folded_batchnorms(bench) -> None:
    measure, _, _ = bench
    x = torch.randn(4, 4)
    assert measure.count_compute_ops(lambda: (x.view(16).unsqueeze(0) + 1).relu().t()) == 2
    assert measure.count_compute_ops(lambda: torch.empty(3).fill_(1)) == 1
    torch.manual_seed(0)
    model = cozoo.create_model("cox3d_xs").eval()
    fused = cozoo.fuse_conv_bn(model)
    folded = sum(isinstance(m, nn.BatchNorm3d) for m in model.modules())
    frame = torch.randn(1, 3, 32, 32)
    counts = []
    with torch.no_grad():
        for net, fast in ((model, False), (fused, False), (model, True)):  # plain step; fast: folded anyway
            net.reset()
            with fast_steps(fast):
                for _ in range(net.first_output + 1):
                    net.forward_step(frame)
                counts.append(measure.count_compute_ops(lambda net=net: net.forward_step(frame)))
    assert folded > 0 and counts[0] - counts[1] == folded
    assert counts[2] <= counts[1]  # inference steps fold the BatchNorms themselves (and take the CPU paths)


def test_step_speed_records_steps_clip_and_streams(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """`benchmarks/step_speed.py` end to end at a tiny crop: the JSON holds what the README tables read."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import step_speed

    threads = torch.get_num_threads()
    out = tmp_path / "speed.json"
    try:
        step_speed.main(["--models", "x3d_xs", "--crop", "32", "--rounds", "2", "--step-periods", "1",
                         "--streams", "--stream-batches", "1,2", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    result = json.loads(out.read_text())
    entry = result["models"]["x3d_xs"]
    assert entry["crop"] == 32 and entry["flops"]["reduction"] > 1
    for clock in ("cpu", "wall"):
        assert set(entry[clock]["modes"]) == {"step_fast", "step_plain", "clip"}
        assert all(m["rounds"] == 2 and m["median_ms"] > 0 for m in entry[clock]["modes"].values())
        assert entry[clock]["efficiency"]["step_fast"] > 0
    streams = result["streams"]["x3d_xs"]
    assert set(streams["batches"]) == {"1", "2"} and streams["best_batch"] in (1, 2)
    assert streams["steps_per_s_per_stream"] == 30 / streams["sampling_rate"]
    assert streams["realtime_streams"] == streams["batches"][str(streams["best_batch"])]["realtime_streams"]


def test_pool_benchmark_writes_its_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import pool

    out = tmp_path / "pool.json"
    pool.main(["--models", "colate_fusion", "--streams", "1,2", "--crop", "16", "--frames", "1", "--quiet",
               "--mixed-warmup", "--out", str(out)])
    result = json.loads(out.read_text())
    rows = result["models"][0]["results"]
    assert [row["streams"] for row in rows] == [1, 2]
    assert all(row["pool_fps"] > 0 and row["separate_fps"] > 0 for row in rows)
    assert "pool_mixed_warmup_fps" not in rows[0] and rows[1]["pool_mixed_warmup_vs_separate"] > 0
    assert not list(tmp_path.glob("*.tmp"))


def test_peer_reproduces_the_windowed_head(bench, one_thread) -> None:
    """PyTorchVideo's head windows (2x2 on a 3x3 map at 96 px), built with continual-inference's
    co.AvgPool3d as the Co3D authors' CoX3D head does: equal steady-state steps."""
    _, peers, _ = bench
    if peers.available() is None:
        pytest.skip("continual-inference is not installed")
    torch.manual_seed(0)
    regular = cozoo.create_model("x3d_xs", num_classes=5, head_window=(4, 2, 2), width_factor=0.5,
                                 depth_factor=0.5, head_width=32).eval()
    from cozoo.continual import CoGlobalAvgPool3d, to_continual

    ours = to_continual(regular, pool_window=4).eval()
    pool = next(m for m in ours.modules() if isinstance(m, CoGlobalAvgPool3d))
    assert pool.spatial_window == (2, 2)
    peer = peers.to_co_inference(regular, peers.global_pool_window(ours))
    with torch.no_grad():
        result = peers.check_equivalence(ours, peer, torch.randn(1, 3, ours.first_output + 4, 96, 96))
    assert result.compared >= 2 and result.max_abs_diff <= 1e-5 * max(1.0, result.max_abs_output)
