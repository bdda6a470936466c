"""Aggregate frames/s of a `StreamPool` against N separate ``model.stream()`` objects, in one run.

For each model and each number of live streams N: the pool (capacity N, all N streams open) is pushed one
frame per stream per push; the baseline is N independent models (deep copies) each with its own
``model.stream()``, stepped one after another. Both are warmed into steady state first (every stream
past its first output and a full stride period), then timed over the same number of frames per stream.
``--staggered`` also times the pool with its streams opened on alternate pushes: for a strided model half
the streams are then at another stride phase and each push runs two masked batched steps.
``--mixed-warmup`` also times the pool with its odd streams in a padded warm-up (``open(warmup="padded")``)
and the others valid: streams of the two modes never share a step, so each push runs two masked steps.

    python benchmarks/pool.py --device cpu --out benchmarks/results/pool_cpu.json
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

import cozoo
from cozoo.inference.pool import StreamPool
from cozoo.training.checkpoint import write_text_atomic


def frames_for(n: int, crop: int, device: torch.device, count: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(n)
    return [torch.randn(n, 3, crop, crop, generator=generator).to(device) for _ in range(count)]


def synchronize(frames: list[torch.Tensor]) -> None:
    """Wait for queued device work (CUDA runs asynchronously: timings must cover it)."""
    if frames[0].is_cuda:
        torch.cuda.synchronize(frames[0].device)


def time_after(frames: list[torch.Tensor], settle: int, step: Callable[[torch.Tensor], None]) -> float:
    """Seconds ``step`` takes over ``frames[settle:]`` (after ``settle`` untimed calls; the garbage
    collector paused while timed), device work included."""
    start = 0.0
    for t, batch in enumerate(frames):
        if t == settle:
            gc.disable()
            synchronize(frames)
            start = time.perf_counter()
        step(batch)
    synchronize(frames)
    elapsed = time.perf_counter() - start
    gc.enable()
    return elapsed


def time_pool(model: nn.Module, n: int, frames: list[torch.Tensor], settle: int, staggered: bool,
              mixed: bool = False) -> float:
    """Seconds for ``len(frames) - settle`` pushes of one frame to each of ``n`` streams, after ``settle``
    pushes of warm-up. Staggered: odd streams open one push later (another stride phase); mixed: odd
    streams in a padded warm-up."""
    pool = StreamPool(model, capacity=n)
    ids = [pool.open(warmup="padded" if mixed and i % 2 else None) for i in range(n)
           if not staggered or i % 2 == 0]
    if staggered:
        pool.push({s: frames[0][i] for i, s in enumerate(ids)})
        ids = ids + [pool.open() for i in range(n) if i % 2]
    return time_after(frames, settle, lambda batch: pool.push({s: batch[i] for i, s in enumerate(ids)}))


def time_separate(model: nn.Module, n: int, frames: list[torch.Tensor], settle: int) -> float:
    """The same for ``n`` deep copies of ``model``, each with its own ``model.stream()``."""
    streams = [copy.deepcopy(model).stream() for _ in range(n)]

    def step(batch: torch.Tensor) -> None:
        for i, stream in enumerate(streams):
            stream.push(batch[i : i + 1])

    return time_after(frames, settle, step)


def benchmark(name: str, sizes: list[int], crop: int, timed: int, device: torch.device, staggered: bool,
              quiet: bool, mixed: bool = False) -> dict[str, Any]:
    torch.manual_seed(0)
    model = cozoo.create_model(name).eval().to(device)
    settle = model.first_output + model.stride + 1  # + 1: a staggered stream opens one push late
    timed = -(-timed // model.stride) * model.stride  # whole stride periods
    rows = []
    for n in tqdm(sizes, desc=name, disable=quiet, file=sys.stderr):
        frames = frames_for(n, crop, device, settle + timed)
        with torch.no_grad():
            separate = time_separate(model, n, frames, settle)
            pool = time_pool(model, n, frames, settle, staggered=False)
            row = {"streams": n, "separate_fps": n * timed / separate, "pool_fps": n * timed / pool}
            if staggered and model.stride > 1:
                row["pool_staggered_fps"] = n * timed / time_pool(model, n, frames, settle, staggered=True)
            if mixed and n > 1:
                mixed_time = time_pool(model, n, frames, settle, staggered=False, mixed=True)
                row["pool_mixed_warmup_fps"] = n * timed / mixed_time
        row["pool_vs_separate"] = row["pool_fps"] / row["separate_fps"]
        for what in ("staggered", "mixed_warmup"):
            if f"pool_{what}_fps" in row:
                row[f"pool_{what}_vs_separate"] = row[f"pool_{what}_fps"] / row["separate_fps"]
        rows.append(row)
    return {"model": name, "first_output": model.first_output, "stride": model.stride, "crop": crop,
            "timed_frames_per_stream": timed, "results": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="cox3d_xs,coi3d_r50")
    parser.add_argument("--streams", default="1,8,32,64", help="live streams per run, comma-separated")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8, help="timed frames per stream (whole periods)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--staggered", action="store_true", help="also time streams at mixed stride phases")
    parser.add_argument("--mixed-warmup", action="store_true",
                        help="also time the pool with half its streams in a padded warm-up")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pool_cpu.json"))
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = [int(s) for s in args.streams.split(",")]
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "cozoo": cozoo.__version__},
        "device": {"type": device.type, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                   "load_average_start": list(os.getloadavg())},
        "settings": {"crop": args.crop, "timed_frames_per_stream": args.frames, "dtype": "float32",
                     "grad": "torch.no_grad()", "num_classes": "default (400)",
                     "separate": "N deep copies of the model, each model.stream(), stepped one after another",
                     "pool": "StreamPool(model, capacity=N), N streams open, one push of N frames per step"},
        "models": [benchmark(name, sizes, args.crop, args.frames, device, args.staggered, args.quiet,
                             args.mixed_warmup) for name in args.models.split(",")],
    }
    result["device"]["load_average_end"] = list(os.getloadavg())
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    for entry in result["models"]:
        for row in entry["results"]:
            extra = ""
            for what in ("staggered", "mixed_warmup"):
                if f"pool_{what}_fps" in row:
                    ratio = row[f"pool_{what}_vs_separate"]
                    extra += f"  {what.replace('_', ' ')} {row[f'pool_{what}_fps']:8.1f} ({ratio:.2f}x)"
            print(f"{entry['model']:>12} N={row['streams']:>3}  separate {row['separate_fps']:8.1f} fps  "
                  f"pool {row['pool_fps']:8.1f} fps ({row['pool_vs_separate']:.2f}x){extra}")


if __name__ == "__main__":
    main()
