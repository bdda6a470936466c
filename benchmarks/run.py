"""Benchmark continual (step-mode) models against their regular models and continual-inference 1.2.4.

For each model, on one device, in one run:

* (a) ``step``: our continual model's ``forward_step``, one frame at a time (eager PyTorch);
* ``step_graph`` (CUDA only): the same steps replayed as CUDA graphs (`cozoo.continual.CudaGraphStepper`);
* ``step_graph_compiled`` (CUDA, ``--compile``): the step compiled by TorchInductor, then replayed as CUDA
  graphs (``CudaGraphStepper(compile=True)``); compiled per batch size, so only at ``--compile-batches``;
* (b) ``clip``: the regular model re-run on the sliding clip of its last ``frames`` frames, per frame;
* ``clip_graph`` (CUDA only): the same clip forward replayed as one CUDA graph (launch overhead removed
  from the baseline too, so the step-vs-clip ratio is not flattered by the baseline's Python overhead);
* (c) ``peer``: the same network and weights built with continual-inference (see `benchmarks.peers`).

Measured: per-frame latency at batch 1 (median of amortised stride periods, after warm-up), frames/s at
each batch size, peak memory, FLOPs per clip and per frame. Writes ``<out>/<device>.json`` and a plot
``<out>/<device>.png``. Usage (from the repository root)::

    python benchmarks/run.py --device cuda --out benchmarks/results/
    python benchmarks/run.py --device cpu --crop 112 --batches 1,4 --seconds 0.5   # reduced
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import functools
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch._dynamo
from torch import nn

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cozoo  # noqa: E402
from benchmarks import peers  # noqa: E402
from benchmarks.measure import (  # noqa: E402
    CPU_MEMORY_METHOD,
    CUDA_MEMORY_METHOD,
    Budget,
    Latency,
    Throughput,
    count_compute_ops,
    cpu_name,
    measure_latency,
    measure_throughput,
    track_peak_memory,
)
from cozoo.continual import CudaGraphStepper, to_continual  # noqa: E402
from cozoo.flops import convention, count_flops  # noqa: E402
from cozoo.fuse import fuse_conv_bn  # noqa: E402
from cozoo.registry import get_config  # noqa: E402

DEFAULT_MODELS = ("x3d_xs", "x3d_s", "x3d_m", "x3d_l", "i3d_r50", "slow_r50", "slowfast_r50", "r2plus1d_18")
# Compiling last: its tens of seconds of compile work (and worker processes) stay out of the other timings.
MODES = ("step", "step_graph", "clip", "clip_graph", "peer", "step_graph_compiled")
GRAPH_MODES = ("step_graph", "step_graph_compiled", "clip_graph")
STEP_MODES = ("step", "step_graph", "step_graph_compiled")  # ours, compared with the clip and the peer
DISTINCT_FRAMES = 2  # frames cycled through while stepping (inputs need not be realistic, only fresh)
#: A replayed output must be this much closer to the eager output of its own step than consecutive eager
#: outputs are to each other; a replay that lags or repeats an output scores about 1 or more.
REPLAY_CHECK_LIMIT = 0.05


@dataclass(frozen=True)
class Settings:
    device: str
    models: tuple[str, ...]
    crop: int | None  # None: each model's test crop
    frames: int | None  # None: each model's clip length
    batches: tuple[int, ...]
    latency: Budget
    throughput: Budget
    check_crop: int  # 0 skips the equivalence check
    peer: bool
    note: str
    compile_batches: tuple[int, ...] = ()  # batch sizes of step_graph_compiled
    compile_models: tuple[str, ...] = ()  # models timed in step_graph_compiled (compiling takes a while)
    fuse_bn: bool = False  # fold BatchNorm into convs in the benchmarked network (all modes and the peer)


# -- one model -----------------------------------------------------------------------------------------------
class Runner:
    """Callables for each mode of one model at one batch size; prepares state (warm-up to steady state)."""

    def __init__(self, regular: nn.Module, ours: nn.Module, peer: nn.Module | None, frames: int, crop: int,
                 device: torch.device) -> None:
        self.regular, self.ours, self.peer = regular, ours, peer
        self.frames, self.crop, self.device = frames, crop, device
        self.period = int(ours.stride)  # type: ignore[arg-type]
        self.settle = int(ours.first_output) + self.period  # type: ignore[arg-type]

    def _frames(self, batch: int) -> list[torch.Tensor]:
        shape = (batch, 3, self.crop, self.crop)
        return [torch.randn(shape, device=self.device) for _ in range(DISTINCT_FRAMES)]

    def prepare(self, mode: str, batch: int) -> Callable[[int], object]:
        """A callable ``call(i)`` doing the i-th unit of work of ``mode``, stepped models in steady state."""
        if mode in ("clip", "clip_graph"):
            clip = torch.randn(batch, 3, self.frames, self.crop, self.crop, device=self.device)
            if mode == "clip":
                return lambda i: self.regular(clip)
            replay = capture_graph(lambda: self.regular(clip))
            return lambda i: replay()
        frames = self._frames(batch)
        if mode == "step":
            self.ours.reset()  # type: ignore[operator]
            step = self.ours.forward_step  # type: ignore[assignment]
        elif mode == "peer":
            assert self.peer is not None
            peers.reset_peer(self.peer)
            step = self.peer.forward_step  # type: ignore[assignment]
        elif mode in ("step_graph", "step_graph_compiled"):
            stepper = CudaGraphStepper(self.ours, frames[0], compile=mode == "step_graph_compiled")
            for i in range(stepper.warmup + stepper.period):  # eager (and compiled) warm-up, then capture
                stepper.step(frames[i % DISTINCT_FRAMES])
            assert stepper.captured
            return lambda i: stepper.step(frames[i % DISTINCT_FRAMES])
        else:
            raise ValueError(f"unknown mode {mode!r}")
        for i in range(self.settle):
            step(frames[i % DISTINCT_FRAMES])
        return lambda i: step(frames[i % DISTINCT_FRAMES])

    def compute_ops(self) -> dict[str, float]:
        """Compute ops (about the kernels a GPU launches) per frame at batch 1: a steady-state step of ours
        (mean over a stride period), a clip forward of the regular model, a step of the peer."""
        counts = {}
        for mode in ("step", "clip", "peer") if self.peer is not None else ("step", "clip"):
            call = self.prepare(mode, 1)
            calls = 1 if mode == "clip" else self.period  # every clip forward is the same work
            ops = [count_compute_ops(functools.partial(call, i)) for i in range(calls)]
            counts[mode] = sum(ops) / calls
            self.release()
        return counts

    def check_replay(self, mode: str, batch: int) -> dict[str, Any]:
        """`replay_vs_eager` on a stepper of its own, captured with TF32 off: with TF32, rounding alone
        can differ from eager steps by as much as consecutive outputs of random weights differ."""
        example = self._frames(batch)[0]
        with tf32_disabled():
            stepper = CudaGraphStepper(self.ours, example, compile=mode == "step_graph_compiled")
            result = {**replay_vs_eager(stepper, example), "tf32": False}
        del stepper
        self.ours.reset()  # type: ignore[operator]
        torch.cuda.empty_cache()
        return result

    def release(self) -> None:
        """Drop stream state (and CUDA graph pools) between measurements."""
        self.ours.reset()  # type: ignore[operator]
        torch._dynamo.reset()  # compiled steps guard on this model instance and batch size
        if self.peer is not None:
            peers.reset_peer(self.peer)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def replay_vs_eager(stepper: CudaGraphStepper, example: torch.Tensor, replays: int = 8) -> dict[str, Any]:
    """Steps ``stepper`` (fresh) through warm-up, capture and ``replays`` replays (whole periods) beside an
    eager copy of its model, both fed the same fresh random frames shaped like ``example``.

    ``error_vs_step_change``: the largest difference of a replayed output from the eager output of its
    step, over the smallest change between consecutive eager outputs. Random weights give outputs that
    vary little around a large constant part, so a difference relative to the outputs' size would hide a
    replay that lags or repeats an output; against the step-to-step change such a replay scores about 1
    or more, a correct one (float rounding) far below `REPLAY_CHECK_LIMIT`."""
    reference = copy.deepcopy(stepper.model)
    periods = -(-replays // stepper.period)
    replayed, eager = [], []
    for i in range(stepper.warmup + 1 + periods * stepper.period):
        frame = torch.randn_like(example)
        out, expected = stepper.step(frame), reference.forward_step(frame)  # type: ignore[operator]
        if i >= stepper.warmup and expected is not None:
            replayed.append(None if out is None else out.clone())
            eager.append(expected)
    del reference
    if len(eager) < 2:
        raise RuntimeError(f"the replay check saw {len(eager)} output(s); it compares at least 2")
    if any(r is None for r in replayed):
        return {"error_vs_step_change": None, "passed": False, "outputs": len(eager),
                "reason": "a replay gave no output where the eager step gave one"}
    error = max((r - e).abs().max().item() for r, e in zip(replayed, eager, strict=True))
    change = min((b - a).abs().max().item() for a, b in zip(eager, eager[1:], strict=False))
    if change == 0:
        return {"error_vs_step_change": None, "passed": False, "outputs": len(eager),
                "reason": "consecutive eager outputs were equal: nothing to tell a stale replay by"}
    score = error / change
    return {"error_vs_step_change": score, "passed": score <= REPLAY_CHECK_LIMIT, "outputs": len(eager)}


@contextlib.contextmanager
def tf32_disabled() -> Iterator[None]:
    """Full float32 convolutions and matmuls for the enclosed work (PyTorch allows TF32 convs by default)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def capture_graph(fn: Callable[[], object]) -> Callable[[], None]:
    """``fn`` captured as one CUDA graph (warmed up on a side stream first, as capture requires); returns
    the graph's replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def benchmark_mode(runner: Runner, mode: str, settings: Settings) -> dict[str, Any]:
    """Latency at batch 1, frames/s and peak memory at every batch size, for one mode."""
    out: dict[str, Any] = {"frames_per_s": {}, "peak_memory_mib": {}}
    for batch in settings.compile_batches if mode == "step_graph_compiled" else settings.batches:
        try:
            if mode in ("step_graph", "step_graph_compiled"):
                out.setdefault("replay_check", {})[str(batch)] = runner.check_replay(mode, batch)
            latency, fps, peak = _measure_batch(runner, mode, batch, settings)
        except torch.OutOfMemoryError as error:
            out["frames_per_s"][str(batch)] = {"error": f"out of memory: {str(error).splitlines()[0]}"}
            continue
        finally:
            runner.release()
        if latency is not None:
            out["latency"] = asdict(latency)
            out["latency_ms"] = latency.median_ms
        out["frames_per_s"][str(batch)] = asdict(fps)
        out["peak_memory_mib"][str(batch)] = peak
    if mode == "step_graph_compiled":
        shutdown = getattr(getattr(torch._inductor, "async_compile", None), "shutdown_compile_workers", None)
        if shutdown is not None:
            shutdown()  # compile workers left running would share the CPU with later timings
    return out


def replay_passed(result: dict[str, Any]) -> bool:
    """Whether every replay check of a mode's results passed (modes without one pass)."""
    return all(check.get("passed", False) for check in result.get("replay_check", {}).values())


def _measure_batch(runner: Runner, mode: str, batch: int, settings: Settings,
                   ) -> tuple[Latency | None, Throughput, float | None]:
    """(latency if batch 1, throughput, peak MiB); the prepared state is dropped on return."""
    device = runner.device
    period = 1 if mode.startswith("clip") else runner.period
    latency, held = None, None
    graph = mode in GRAPH_MODES
    reserved = torch.cuda.memory_reserved(device) if graph else 0
    with track_peak_memory(device) as peak:
        call = runner.prepare(mode, batch)
        for i in range(period):  # one-off work (cuDNN autotuning, lazy allocations) stays out of the peak
            call(i)
        if graph:  # replays allocate nothing: what they use sits in the graphs' private pools
            held = (torch.cuda.memory_reserved(device) - reserved) / 2**20
        peak.restart()
        if batch == 1:
            latency = measure_latency(call, device, settings.latency, period)
        fps = measure_throughput(call, device, settings.throughput, batch, period)
    return latency, fps, (held if graph else peak.mib)


def flops(regular: nn.Module, ours: nn.Module, frames: int, crop: int) -> dict[str, Any]:
    clip = count_flops(regular, (1, 3, frames, crop, crop))
    step = count_flops(ours, (1, 3, crop, crop))
    return {
        "clip_gmacs": clip.gmacs,
        "step_gmacs": step.gmacs,
        "reduction": clip.macs / step.macs,
        "params_m": clip.params / 1e6,
        "step_state_mib": step.state_bytes / 2**20,
        "convention": convention("eval"),
    }


def peer_entry(regular: nn.Module, ours: nn.Module, frames: int, settings: Settings, device: torch.device,
               ) -> tuple[nn.Module | None, dict[str, Any]]:
    """Build the continual-inference model and check it against ours; (None, reason) when unsupported."""
    version = peers.available()
    if not settings.peer or version is None:
        return None, {"supported": False, "reason": "disabled" if not settings.peer else
                      "continual-inference is not installed (pip install continual-inference==1.2.4)"}
    reason = peers.unsupported_reason(regular)
    if reason is not None:
        return None, {"supported": False, "version": version, "reason": reason}
    window = peers.global_pool_window(ours)
    entry: dict[str, Any] = {"supported": True, "version": version, "padding_semantics": peers.PADDING_NOTE}
    if settings.check_crop:
        try:
            entry["equivalence"] = equivalence(regular, frames, settings.check_crop, device)
        except Exception as error:  # reported in the results, the timings still run
            entry["equivalence"] = {"error": f"{type(error).__name__}: {error}"}
    return peers.to_co_inference(regular, window), entry


def equivalence(regular: nn.Module, frames: int, crop: int, device: torch.device) -> dict[str, Any]:
    """Steady-state step outputs of ours vs the peer: float64 copies with the same weights, random frames."""
    reg64 = copy.deepcopy(regular).double().to(device)
    ours64 = to_continual(reg64, pool_window=frames).eval()
    peer64 = peers.to_co_inference(reg64, peers.global_pool_window(ours64))
    steps = int(ours64.first_output) + 2 * int(ours64.stride)
    generator = torch.Generator().manual_seed(0)
    clip = torch.randn(1, 3, steps, crop, crop, dtype=torch.float64, generator=generator).to(device)
    result = peers.check_equivalence(ours64, peer64, clip)
    return {**asdict(result), "relative": result.relative, "crop": crop, "dtype": "float64",
            "device": device.type}


def speedups(modes: dict[str, dict[str, Any]], reduction: float) -> dict[str, Any]:
    """Latency ratios at batch 1, and the targets: step/clip speed-up vs half the FLOPs reduction (the
    issue's baseline (b) is the eager clip; the ratio to the CUDA-graph clip is reported beside it)."""
    def latency(mode: str) -> float | None:
        result = modes.get(mode, {})
        if not replay_passed(result):  # a graph mode whose replays disagree with eager steps has no speed
            return None
        if mode == "clip":  # timed twice: the faster keeps the ratio conservative
            timed = (result.get("latency_ms"), result.get("latency_repeat_ms"))
            return min((t for t in timed if t), default=None)
        return result.get("latency_ms")

    out: dict[str, Any] = {}
    for fast in STEP_MODES:
        for slow in ("clip", "clip_graph", "peer"):
            a, b = latency(fast), latency(slow)
            if a and b:
                out[f"{fast}_vs_{slow}"] = b / a
    best = max((out.get(f"{m}_vs_clip", 0.0) for m in STEP_MODES), default=0.0)
    out["best_step_vs_clip_over_flops_reduction"] = best / reduction if best else None
    peer_ratios = [out[f"{m}_vs_peer"] for m in STEP_MODES if f"{m}_vs_peer" in out]
    out["faster_than_peer"] = max(peer_ratios) > 1 if peer_ratios else None
    return out


def benchmark_model(name: str, settings: Settings, device: torch.device, log: Callable[[str], None],
                    ) -> dict[str, Any]:
    config = get_config(name)
    crop = settings.crop or config.test_crop
    frames = settings.frames or config.frames
    torch.manual_seed(0)
    regular = cozoo.create_model(name).eval()
    if settings.fuse_bn:
        regular = fuse_conv_bn(regular)
    ours = to_continual(regular, pool_window=frames).eval()
    entry: dict[str, Any] = {
        "continual_name": f"co{name}", "crop": crop, "frames": frames,
        "schedule": {"first_output": int(ours.first_output), "stride": int(ours.stride)},
        "flops": flops(regular, ours, frames, crop),
    }
    started = time.perf_counter()
    peer, entry["peer"] = peer_entry(regular, ours, frames, settings, device)
    log(f"  peer: {json.dumps(entry['peer'].get('equivalence', entry['peer'].get('reason')))}")
    regular, ours = regular.to(device), ours.to(device)
    peer = peer.to(device) if peer is not None else None
    runner = Runner(regular, ours, peer, frames, crop, device)
    try:
        entry["compute_ops_per_frame"] = runner.compute_ops()
    except Exception as error:  # reported, not fatal to the run
        entry["compute_ops_per_frame"] = {"error": f"{type(error).__name__}: {error}"}
        runner.release()
    log(f"  compute ops per frame at batch 1: {entry['compute_ops_per_frame']}")
    entry["modes"] = {}
    for mode in MODES:
        if ((mode in GRAPH_MODES and device.type != "cuda") or (mode == "peer" and peer is None)
                or (mode == "step_graph_compiled" and name not in settings.compile_models)):
            continue
        t0 = time.perf_counter()
        try:
            result = benchmark_mode(runner, mode, settings)
        except Exception as error:  # a failing mode is reported, not fatal to the run
            result = {"error": f"{type(error).__name__}: {error}"}
            runner.release()
        entry["modes"][mode] = result
        fps = {b: round(v.get("outputs_per_s", math.nan), 1)
               for b, v in result.get("frames_per_s", {}).items()}
        log(f"  {mode:10s} latency {result.get('latency_ms', math.nan):8.2f} ms  frames/s {fps}  "
            f"({time.perf_counter() - t0:.1f} s)")
    clip = entry["modes"].get("clip", {})
    if "latency_ms" in clip:  # again after the other modes: the baseline of every ratio, timed twice
        try:
            call = runner.prepare("clip", 1)
            call(0)
            clip["latency_repeat_ms"] = measure_latency(call, device, settings.latency).median_ms
        except Exception as error:  # reported, not fatal to the run
            clip["latency_repeat_error"] = f"{type(error).__name__}: {error}"
        finally:
            runner.release()
        log(f"  clip again latency {clip.get('latency_repeat_ms') or math.nan:8.2f} ms")
    entry["speedup"] = speedups(entry["modes"], entry["flops"]["reduction"])
    entry["seconds"] = time.perf_counter() - started
    return entry


# -- whole run -----------------------------------------------------------------------------------------------
def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "python": platform.python_version(), "torch": torch.__version__, "cozoo": cozoo.__version__,
            "continual_inference": peers.available(), "git_commit": _git_commit(),
        },
        "device": {"type": device.type, "torch_threads": torch.get_num_threads(), "cpu": cpu_name(),
                   "cpu_count": os.cpu_count(), "load_average_start": list(os.getloadavg())},
    }
    if device.type == "cuda":
        info["device"]["name"] = torch.cuda.get_device_name(device)
        info["versions"].update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    else:
        info["device"]["name"] = cpu_name()
    return info


def _git_commit() -> str | None:
    """The checkout's commit (with ``+dirty`` for local changes), or None outside a git checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def run(settings: Settings, out_dir: Path, log: Callable[[str], None] = print, plot: bool = True,
        ) -> dict[str, Any]:
    """Benchmark every model in ``settings``; writes ``<out_dir>/<device>.json`` (and ``.png``)."""
    device = torch.device(settings.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda but CUDA is not available")
        torch.backends.cudnn.benchmark = True
    result = environment(device)
    result["settings"] = {
        **{k: v for k, v in asdict(settings).items() if k not in ("latency", "throughput")},
        "latency_budget": asdict(settings.latency), "throughput_budget": asdict(settings.throughput),
        "dtype": "float32", "grad": "torch.no_grad()",
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "memory_method": CUDA_MEMORY_METHOD if device.type == "cuda" else CPU_MEMORY_METHOD,
        "latency_definition": "median over stride periods of (time of the period's steps / stride), each "
                              "call synchronised; clip: one regular forward on the sliding clip per frame",
        "weights": "random initialisation (timings do not depend on the weight values)",
    }
    result["models"] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{device.type}.json"
    start = time.perf_counter()
    with torch.no_grad():
        for name in settings.models:
            log(f"{name}:")
            result["models"][name] = benchmark_model(name, settings, device, log)
            result["device"]["load_average_end"] = list(os.getloadavg())
            result["total_seconds"] = time.perf_counter() - start
            path.write_text(json.dumps(result, indent=1) + "\n")  # keep partial results
    log(f"wrote {path} ({result['total_seconds']:.0f} s)")
    if plot:
        from benchmarks.plot import plot_results

        png = plot_results(result, out_dir / f"{device.type}.png")
        log(f"wrote {png}")
    return result


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> tuple[Settings, Path, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        choices=("cpu", "cuda"))
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated regular model names (their continual forms are co<name>)")
    parser.add_argument("--crop", type=int, help="frame size (default: each model's test crop)")
    parser.add_argument("--frames", type=int, help="clip length / pool window (default: each model's)")
    parser.add_argument("--batches", type=_ints, default=(1, 8, 64), help="batch sizes for frames/s")
    parser.add_argument("--iters", type=int, default=200, help="most timed calls per measurement")
    parser.add_argument("--seconds", type=float, default=0.5, help="time budget per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls (periods) before timing")
    parser.add_argument("--check-crop", type=int, default=64,
                        help="frame size of the float64 step-output check against the peer (0: skip)")
    parser.add_argument("--no-peer", action="store_true", help="skip continual-inference (c)")
    parser.add_argument("--compile", action="store_true",
                        help="CUDA: also time step_graph_compiled (TorchInductor; compiles per batch size)")
    parser.add_argument("--compile-models", help="comma-separated models for --compile (default: all)")
    parser.add_argument("--compile-batches", type=_ints, default=(1,),
                        help="batch sizes of step_graph_compiled")
    parser.add_argument("--fuse-bn", action="store_true",
                        help="fold BatchNorm into the preceding convs (cozoo.fuse_conv_bn) in the "
                        "benchmarked network: regular, continual and peer alike")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--note", default="", help="free text stored with the settings")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    models = tuple(m for m in args.models.split(",") if m)
    for name in models:
        get_config(name)  # unknown names fail here, with suggestions
        get_config(f"co{name}")
    compiled = tuple(m for m in (args.compile_models or args.models).split(",") if m) if args.compile else ()
    if not set(compiled) <= set(models):
        parser.error(f"--compile-models {sorted(set(compiled) - set(models))} are not in --models")
    if args.iters < 3:
        parser.error(f"--iters must be at least 3 (the fewest timed calls per measurement), got {args.iters}")
    for flag in ("crop", "frames", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag} must be positive, got {value}")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(
        device=args.device, models=models, crop=args.crop, frames=args.frames, batches=args.batches,
        latency=Budget(warmup=args.warmup, min_iters=3, max_iters=args.iters, seconds=args.seconds),
        throughput=Budget(warmup=1, min_iters=2, max_iters=args.iters, seconds=args.seconds),
        check_crop=args.check_crop, peer=not args.no_peer, note=args.note,
        compile_batches=args.compile_batches if compiled else (), compile_models=compiled,
        fuse_bn=args.fuse_bn,
    )
    return settings, args.out, not args.no_plot


def main(argv: list[str] | None = None) -> None:
    settings, out_dir, plot = parse_args(argv)
    run(settings, out_dir, plot=plot)


if __name__ == "__main__":
    main()
