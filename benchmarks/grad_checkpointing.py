"""Activation memory of one training step with and without `set_grad_checkpointing`, on CPU.

For each model at its recipe's clip size (frames x train crop, batch 1 unless ``--batch``): one untimed
training step allocates the gradients, then the peak memory of a second step (forward, loss, backward) above
the memory held before it (weights and gradients) is measured (`benchmarks.measure.track_peak_memory`: peak
RSS via /proc/self/clear_refs, glibc's freed memory trimmed first). Each mode runs in a fresh process
(glibc keeps freed memory; a fresh process starts from a clean heap). The step's time ratio is measured side
by side. Usage::

    python benchmarks/grad_checkpointing.py --out benchmarks/results/grad_checkpointing_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("x3d_xs", "x3d_s", "x3d_m", "r2plus1d_18", "i3d_r50", "slow_r50", "slowfast_r50", "c3d")


def measure(name: str, checkpointing: bool, batch: int) -> dict[str, float]:
    """One model, one mode (in this process): peak bytes above the level before the measured step."""
    sys.path.insert(0, str(ROOT))
    import cozoo
    from benchmarks.measure import track_peak_memory

    config = cozoo.registry.get_config(name)
    model = cozoo.create_model(name).train()
    model.set_grad_checkpointing(checkpointing)
    x = torch.randn(batch, 3, config.frames, config.train_crop, config.train_crop)
    labels = torch.zeros(batch, dtype=torch.long)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()

    step()  # gradients allocated, one-off set-up done
    with track_peak_memory(torch.device("cpu")) as peak:
        start = time.perf_counter()
        step()
        seconds = time.perf_counter() - start
    return {"peak_bytes": peak.bytes, "step_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/grad_checkpointing_cpu.json")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1] == "1", args.batch)))
        return
    import cozoo

    report = {
        "what": "peak memory of one training step (forward + cross-entropy + backward) above the memory held "
                "before it (weights and gradients), batch as given, the recipe clip (frames x train crop), "
                "fp32 on CPU; RSS-based (benchmarks.measure.CPU_MEMORY_METHOD); each mode in a fresh "
                "process. time_ratio: one step each, indicative only on a shared machine",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "threads": args.threads, "results": [],
    }
    for name in args.models.split(","):
        config = cozoo.registry.get_config(name)
        result = {"model": name, "clip": [config.frames, config.train_crop, config.train_crop],
                  "batch": args.batch}
        for mode, flag in (("plain", "0"), ("checkpointed", "1")):
            out = subprocess.run(
                [sys.executable, __file__, "--child", name, flag, "--batch", str(args.batch),
                 "--threads", str(args.threads)],
                check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            result[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        plain, ckpt = result["plain"]["peak_bytes"], result["checkpointed"]["peak_bytes"]
        result["memory_ratio"] = ckpt / plain if plain else None
        result["time_ratio"] = result["checkpointed"]["step_s"] / result["plain"]["step_s"]
        report["results"].append(result)
        print(f"{name:14s} plain {plain / 2**20:8.1f} MiB  checkpointed {ckpt / 2**20:8.1f} MiB  "
              f"x{result['memory_ratio']:.2f} memory, x{result['time_ratio']:.2f} step time", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)  # after every model: a long run keeps what it has
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
