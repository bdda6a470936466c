"""CPU step efficiency: the continual step with and without its fast paths against the sliding clip,
timed interleaved in one process (a shared machine's load then hits all three alike), and real-time
streams per device.

Per model, at its test crop (or ``--crop``), batch 1, the run's torch threads (``--threads``, default 1):

* ``step_fast``: ``forward_step`` under ``torch.inference_mode()`` with the fast paths on (what
  ``model.stream()`` runs: BatchNorm folded, channels-last depthwise caches, ...);
* ``step_plain``: ``forward_step`` under ``torch.no_grad()`` with ``fast_steps(False)``: the plain eager
  step as it was before the fast paths;
* ``clip``: the regular model (eval, ``torch.no_grad()``, BatchNorm not folded) on its clip of ``frames``
  frames, once per frame: re-running the clip on a sliding window.

Each round times one of each (steps: ``--step-periods`` stride periods, amortised per frame; clip: one
forward), in that order, for ``--rounds`` rounds; medians over rounds are reported beside the min and max,
by two clocks: ``wall`` (elapsed) and ``cpu`` (the process's CPU time, which on a machine shared by
other jobs leaves out the time the process waited for a core; one thread, so it is the work's time).
``efficiency`` = (clip latency / step latency) / (clip MACs / step MACs), the share of the FLOPs cut that
the step turns into speed (goal: 0.8).

``--streams`` also measures frames/s of the fast step at each batch in ``--stream-batches`` (N parallel
streams, `model.stream()`-style stepping in inference mode) on ``--stream-threads`` threads (default 1:
one core; by CPU time), and the real-time 30 fps streams that serves: frames/s / (30 / sampling rate), at
the best batch.

    PYTHONPATH=. python benchmarks/step_speed.py --models x3d_s --rounds 7 --streams
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cozoo  # noqa: E402
from benchmarks.measure import cpu_name  # noqa: E402
from benchmarks.run import _git_commit, flops  # noqa: E402
from cozoo.continual import to_continual  # noqa: E402
from cozoo.continual.fastpath import fast_steps  # noqa: E402
from cozoo.registry import get_config  # noqa: E402
from cozoo.training.checkpoint import write_text_atomic  # noqa: E402

SOURCE_FPS = 30.0  # the source video's frame rate for the real-time stream count


def _stepper(model: torch.nn.Module, frames: list[torch.Tensor], fast: bool, periods: int,
             ) -> Callable[[], tuple[float, float]]:
    """Warms ``model`` into steady state; returns a callable timing ``periods`` stride periods: (wall, CPU)
    seconds per frame step."""
    grad = torch.inference_mode if fast else torch.no_grad
    steps = periods * int(model.stride)
    with grad(), fast_steps(fast):
        model.reset()
        for i in range(int(model.first_output) + int(model.stride)):
            model.forward_step(frames[i % len(frames)])

    def timed() -> float:
        with grad(), fast_steps(fast):
            start, cpu = time.perf_counter(), time.process_time()
            for i in range(steps):
                model.forward_step(frames[i % len(frames)])
            return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps

    return timed


def _summary(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1e3 for s in seconds]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "rounds": len(ms)}


def measure_model(name: str, crop: int | None, rounds: int, periods: int) -> dict[str, Any]:
    """Interleaved latencies of the fast step, the plain step and the sliding clip for one model."""
    config = get_config(name)
    crop = crop or config.test_crop
    torch.manual_seed(0)
    regular = cozoo.create_model(name).eval()
    fast_model = to_continual(regular, pool_window=config.frames).eval()
    plain_model = copy.deepcopy(fast_model)
    counted = flops(regular, fast_model, config.frames, crop)
    frames = [torch.randn(1, 3, crop, crop) for _ in range(2)]
    clip = torch.randn(1, 3, config.frames, crop, crop)
    fast = _stepper(fast_model, frames, True, periods)
    plain = _stepper(plain_model, frames, False, periods)

    def clip_once() -> tuple[float, float]:
        with torch.no_grad():
            start, cpu = time.perf_counter(), time.process_time()
            regular(clip)
            return time.perf_counter() - start, time.process_time() - cpu

    clip_once()  # one-off work (allocations, oneDNN primitives) stays out of the timings
    times: dict[str, list[tuple[float, float]]] = {"step_fast": [], "step_plain": [], "clip": []}
    for _ in range(rounds):
        times["step_fast"].append(fast())
        times["step_plain"].append(plain())
        times["clip"].append(clip_once())
    entry: dict[str, Any] = {"continual_name": f"co{name}", "crop": crop, "frames": config.frames,
                             "flops": counted}
    for clock, index in (("wall", 0), ("cpu", 1)):
        modes = {mode: _summary([t[index] for t in values]) for mode, values in times.items()}
        fast_ms, plain_ms, clip_ms = (modes[m]["median_ms"] for m in ("step_fast", "step_plain", "clip"))
        entry[clock] = {
            "modes": modes,
            "fast_vs_plain": plain_ms / fast_ms,
            "speedup_vs_clip": {"step_fast": clip_ms / fast_ms, "step_plain": clip_ms / plain_ms},
            "efficiency": {"step_fast": clip_ms / fast_ms / counted["reduction"],
                           "step_plain": clip_ms / plain_ms / counted["reduction"]},
        }
    return entry


def measure_streams(name: str, crop: int | None, batches: tuple[int, ...], periods: int) -> dict[str, Any]:
    """Frames/s of the fast step at each batch (N parallel streams) and real-time streams served."""
    config = get_config(name)
    crop = crop or config.test_crop
    torch.manual_seed(0)
    model = to_continual(cozoo.create_model(name).eval(), pool_window=config.frames).eval()
    needed = SOURCE_FPS / config.sampling_rate  # model steps per second of each real-time stream
    per_batch = {}
    for batch in batches:
        frames = [torch.randn(batch, 3, crop, crop) for _ in range(2)]
        timed = _stepper(model, frames, True, periods)
        samples = [timed() for _ in range(3)]
        wall, cpu = (statistics.median(s[i] for s in samples) for i in (0, 1))
        per_batch[str(batch)] = {"frames_per_s": batch / cpu, "ms_per_step": cpu * 1e3,
                                 "wall_ms_per_step": wall * 1e3,
                                 "realtime_streams": int(batch / cpu // needed)}
        model.reset()
    best = max(per_batch, key=lambda b: per_batch[b]["frames_per_s"])
    return {"crop": crop, "sampling_rate": config.sampling_rate, "steps_per_s_per_stream": needed,
            "batches": per_batch, "best_batch": int(best),
            "realtime_streams": per_batch[best]["realtime_streams"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="x3d_xs,x3d_s,x3d_m,x3d_l,i3d_r50")
    parser.add_argument("--crop", type=int, help="frame size (default: each model's test crop)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--step-periods", type=int, default=4, help="stride periods timed per step sample")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--streams", action="store_true", help="also the streams-per-device table")
    parser.add_argument("--stream-batches", default="1,2,4,8")
    parser.add_argument("--stream-threads", type=int, default=1,
                        help="torch threads of the streams measurement (one core per process by default)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu_step_speed.json"))
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    result.setdefault("models", {})
    result.setdefault("streams", {})
    result["environment"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "git_commit": _git_commit(), "cpu": cpu_name(),
        "cpu_count": os.cpu_count(), "load_average_start": list(os.getloadavg()),
        "threads": args.threads, "stream_threads": args.stream_threads,
    }
    for name in models:
        torch.set_num_threads(args.threads)
        entry = measure_model(name, args.crop, args.rounds, args.step_periods)
        entry["load_average"] = list(os.getloadavg())
        result["models"][name] = entry
        for clock in ("cpu", "wall"):
            modes = entry[clock]["modes"]
            print(f"{name} crop {entry['crop']} {clock}: fast {modes['step_fast']['median_ms']:.1f} ms, "
                  f"plain "
                  f"{modes['step_plain']['median_ms']:.1f} ms, clip {modes['clip']['median_ms']:.0f} ms; "
                  f"efficiency {entry[clock]['efficiency']['step_fast']:.2f} (plain "
                  f"{entry[clock]['efficiency']['step_plain']:.2f}); load {entry['load_average'][0]:.1f}",
                  flush=True)
        _write(args.out, result)
        if args.streams:
            torch.set_num_threads(args.stream_threads)
            batches = tuple(int(b) for b in args.stream_batches.split(","))
            streams = measure_streams(name, args.crop, batches, args.step_periods)
            streams["load_average"] = list(os.getloadavg())
            result["streams"][name] = streams
            print(f"  streams: {streams['realtime_streams']} at batch {streams['best_batch']}", flush=True)
            _write(args.out, result)


def _write(path: Path, result: dict[str, Any]) -> None:
    """Atomically (temp file, then rename): a cut-off run keeps the models that finished."""
    write_text_atomic(path, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
