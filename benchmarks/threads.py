"""Batch-1 frame steps under different torch thread counts, measured side by side in one run (issue 14:
why `cozoo stream` defaults to ``--threads 1``). Each setting is timed in interleaved rounds so that load
from other processes falls on all of them alike.

    python benchmarks/threads.py [--model cox3d_xs] [--crop 182] [--out benchmarks/results/threads_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from cozoo.factory import create_model
from cozoo.fuse import fuse_conv_bn


def _time_steps(model: torch.nn.Module, frame: torch.Tensor, steps: int, threads: int) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    for _ in range(steps):
        model.forward_step(frame)
    return (time.perf_counter() - start) / steps


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="cox3d_xs")
    parser.add_argument("--crop", type=int, default=182)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/threads_cpu.json"))
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    settings = sorted({1, 2, cores})
    model = fuse_conv_bn(create_model(args.model).eval())
    frame = torch.randn(1, 3, args.crop, args.crop)
    model.reset()
    for _ in range(int(model.first_output) + 2):  # warm: steady state, every buffer allocated
        model.forward_step(frame)
    times: dict[int, list[float]] = {n: [] for n in settings}
    for _ in range(args.rounds):
        for n in settings:
            times[n].append(_time_steps(model, frame, args.steps, n))
    median = {n: statistics.median(t) for n, t in times.items()}
    result = {
        "what": f"{args.model} step, batch 1, crop {args.crop}, BatchNorm folded, eager, CPU",
        "cpu_count": cores, "load_average": os.getloadavg(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "median_ms_per_step": {str(n): round(1e3 * m, 3) for n, m in median.items()},
        "slowdown_vs_1_thread": {str(n): round(m / median[1], 2) for n, m in median.items()},
        "rounds_ms": {str(n): [round(1e3 * t, 3) for t in ts] for n, ts in times.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_suffix(".partial")
    partial.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    partial.replace(args.out)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
