"""Real-time streams one device serves through a `StreamPool`: the number a deployment plans with.

A continual model steps on every ``sampling_rate``-th frame of its source, so a camera at 30 frames/s needs
``30 / sampling_rate`` steps per second and one push of the pool (one step of every slot) must take at most
``sampling_rate / 30`` s. For each pool capacity N, in increasing order, all N slots are opened together,
fed one frame each per push into steady state (past warm-up and the CUDA-graph capture), and then pushes
are timed. The pool serves N real-time streams when its push time fits that budget; capacities stop at the
first that misses it (or at the memory limit). Reported per model and precision: ms per push and
aggregate frames/s per capacity, and ``realtime_streams``, the largest capacity that met the budget.

Precisions: ``fp32`` (TF32 off), ``tf32`` (TF32 in matmuls and convolutions; CUDA), ``bf16`` and ``fp16``
(weights, state and frames in that type). On CUDA the pool replays CUDA graphs (``--eager`` to compare).

    python benchmarks/streams.py --device cuda --out benchmarks/results/streams_cuda.json
    python benchmarks/streams.py --device cpu --threads 2 --capacities 1,2,4,8,16 \\
        --out benchmarks/results/streams_cpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cozoo  # noqa: E402
from benchmarks.measure import cpu_name  # noqa: E402
from cozoo.continual import to_continual  # noqa: E402
from cozoo.factory import get_config  # noqa: E402
from cozoo.inference.pool import StreamPool  # noqa: E402
from cozoo.training.checkpoint import write_text_atomic  # noqa: E402

SOURCE_FPS = 30.0
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = tuple(DTYPES)


@contextlib.contextmanager
def precision(name: str) -> Iterator[torch.dtype]:
    """TF32 on for ``tf32`` only (restored after); the dtype weights, state and frames use."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = name == "tf32"
    try:
        yield DTYPES[name]
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pushes(model: torch.nn.Module, capacity: int, crop: int, dtype: torch.dtype, device: torch.device,
                cuda_graphs: bool, seconds: float) -> dict[str, float]:
    """Seconds per push of a full pool in steady state (whole stride periods timed)."""
    pool = StreamPool(model, capacity=capacity, cuda_graphs=cuda_graphs)
    ids = [pool.open() for _ in range(capacity)]
    frames = torch.randn(capacity, 3, crop, crop, device=device).to(dtype)
    batch = {stream_id: frames[i] for i, stream_id in enumerate(ids)}
    period = model.stride
    for _ in range(model.first_output + 3 * period):  # warm-up, state allocation, graph capture
        pool.push(batch)
    synchronize(device)

    def run(pushes: int) -> float:
        gc.disable()
        start = time.perf_counter()
        for _ in range(pushes):
            pool.push(batch)
        synchronize(device)
        elapsed = time.perf_counter() - start
        gc.enable()
        return elapsed

    probe = run(period)
    pushes = period * max(1, min(200, round(seconds / max(probe, 1e-9))))
    elapsed = min(run(pushes), run(pushes))
    per_push = elapsed / pushes
    out = {"pushes_timed": pushes, "ms_per_push": per_push * 1e3, "frames_per_s": capacity / per_push}
    if device.type == "cuda":
        out["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def measure(name: str, precision_name: str, capacities: list[int], device: torch.device, cuda_graphs: bool,
            seconds: float, memory_gib: float, crop: int | None = None) -> dict[str, Any]:
    """One model in one precision: capacities in increasing order until one misses the real-time budget."""
    config = get_config(name)
    crop = crop or config.test_crop
    budget = config.sampling_rate / SOURCE_FPS  # seconds one push may take to keep up with every camera
    entry: dict[str, Any] = {"model": f"co{name}", "precision": precision_name, "crop": crop,
                             "sampling_rate": config.sampling_rate, "push_budget_ms": budget * 1e3,
                             "capacities": {}, "realtime_streams": 0}
    with precision(precision_name) as dtype:
        torch.manual_seed(0)
        model = to_continual(cozoo.create_model(name).eval(), pool_window=config.frames).eval()
        model = model.to(device=device, dtype=dtype)
        per_stream_gib = None
        for capacity in capacities:
            if per_stream_gib is not None and per_stream_gib * capacity > memory_gib:
                entry["stopped"] = f"capacity {capacity} would need ~{per_stream_gib * capacity:.0f} GiB"
                break
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            try:
                row = time_pushes(model, capacity, crop, dtype, device, cuda_graphs, seconds)
            except torch.OutOfMemoryError:
                entry["stopped"] = f"out of memory at capacity {capacity}"
                break
            model.reset()
            entry["capacities"][str(capacity)] = row
            if "max_memory_gib" in row:
                per_stream_gib = row["max_memory_gib"] / capacity
            if row["ms_per_push"] > budget * 1e3:
                entry["stopped"] = f"capacity {capacity} misses the real-time budget"
                break
            entry["realtime_streams"] = capacity
    best = max(entry["capacities"].values(), key=lambda row: row["frames_per_s"], default=None)
    if best is not None:
        entry["best_frames_per_s"] = best["frames_per_s"]
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="x3d_xs,x3d_s,x3d_m,x3d_l,i3d_r50,slow_r50")
    parser.add_argument("--precisions", help="comma-separated (default: fp32,tf32,bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--capacities", default="1,16,64,256,1024,4096")
    parser.add_argument("--crop", type=int, help="frame size (default: each model's test crop)")
    parser.add_argument("--seconds", type=float, default=0.3, help="time budget per measurement")
    parser.add_argument("--memory-gib", type=float, default=100.0, help="CUDA memory a pool may take")
    parser.add_argument("--eager", action="store_true", help="CUDA: no CUDA graphs")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/streams.json"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    precisions = (args.precisions or ("fp32,tf32,bf16" if cuda else "fp32")).split(",")
    capacities = [int(c) for c in args.capacities.split(",")]
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "cozoo": cozoo.__version__},
        "device": {"type": device.type,
                   "name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
                   "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                   "load_average_start": list(os.getloadavg())},
        "settings": {"source_fps": SOURCE_FPS, "cuda_graphs": cuda and not args.eager,
                     "capacities": capacities, "seconds": args.seconds, "grad": "StreamPool.push (no_grad)",
                     "weights": "random initialisation (timings do not depend on the weight values)",
                     "definition": "realtime_streams: the largest pool capacity (all slots live, one frame "
                                   "each per push, steady state) whose push time fits sampling_rate / 30 s"},
        "results": [],
    }
    runs = [(name, p) for name in args.models.split(",") for p in precisions]
    for name, p in tqdm(runs, desc="streams", disable=args.quiet, file=sys.stderr):
        try:
            entry = measure(name, p, capacities, device, cuda and not args.eager, args.seconds,
                            args.memory_gib, args.crop)
        except Exception as error:  # record and go on: one model must not end the run
            entry = {"model": f"co{name}", "precision": p, "error": f"{type(error).__name__}: {error}"}
        result["results"].append(entry)
        print(json.dumps({k: v for k, v in entry.items() if k != "capacities"}), flush=True)
        write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")  # a cut-off run keeps what ran
    result["device"]["load_average_end"] = list(os.getloadavg())
    write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
