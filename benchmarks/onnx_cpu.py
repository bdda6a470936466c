"""Per-frame latency at batch 1 on the CPU: the exported step in onnxruntime vs cozoo's eager PyTorch step,
same model (random weights, BatchNorm folded, as `cozoo export` does), same thread count, timed interleaved
in one run (rounds alternate between the two, so a change in machine load hits both).

    python benchmarks/onnx_cpu.py --crop 112 --out benchmarks/results/onnx_cpu.json

A round times whole stride periods of steady-state steps (strided models' steps differ by phase); the
latency is the median over rounds of the mean step time. Outputs of the two are checked to agree first.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import cozoo
from cozoo.export.onnx import export_onnx
from cozoo.fuse import fuse_conv_bn
from cozoo.training.checkpoint import write_text_atomic

MODELS = ("cox3d_s", "coi3d_r50", "coslowfast_r50", "cor2plus1d_18")


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def bench_model(name: str, crop: int, threads: int, rounds: int, folder: Path) -> dict:
    torch.manual_seed(0)
    model = cozoo.create_model(name, num_classes=400).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_var.uniform_(0.5, 2.0)
    model = fuse_conv_bn(model)
    start = time.perf_counter()
    exported = export_onnx(model, folder, name, crop, progress=False)
    export_s = time.perf_counter() - start
    metadata = json.loads(exported.metadata_path.read_text())
    session = _session(exported.onnx_path, threads)
    outputs = [o.name for o in session.get_outputs()]
    state = {s["name"]: np.zeros(s["shape"], dtype=s["dtype"]) for s in metadata["state"]}
    frame = torch.randn(1, 3, crop, crop)
    feed = frame.numpy()

    def onnx_step() -> np.ndarray | None:
        nonlocal state
        out = dict(zip(outputs, session.run(None, {"frame": feed, **state}), strict=True))
        state = {s["name"]: out[s["output"]] for s in metadata["state"]}
        return out["logits"] if out["valid"] else None

    def eager_step() -> torch.Tensor | None:
        with torch.no_grad():
            return model.forward_step(frame)

    model.reset()
    period = model.stride
    settle = model.first_output + period
    worst = 0.0
    for _ in range(settle + period):  # into steady state, checking the outputs agree
        a, b = onnx_step(), eager_step()
        assert (a is None) == (b is None)
        if b is not None:
            worst = max(worst, float(np.abs(a - b.numpy()).max() / np.abs(b.numpy()).max()))
    steps = period * max(1, 8 // period)
    timings: dict[str, list[float]] = {"onnxruntime": [], "eager": []}
    gc.disable()
    try:
        for _ in range(rounds):
            for mode, call in (("onnxruntime", onnx_step), ("eager", eager_step)):
                begin = time.perf_counter()
                for _ in range(steps):
                    call()
                timings[mode].append((time.perf_counter() - begin) / steps * 1e3)
    finally:
        gc.enable()
    onnx_ms, eager_ms = statistics.median(timings["onnxruntime"]), statistics.median(timings["eager"])
    return {
        "crop": crop, "stride": period, "export_seconds": round(export_s, 1),
        "onnx_bytes": exported.onnx_path.stat().st_size, "max_rel_diff": worst,
        "latency_ms": {"onnxruntime": round(onnx_ms, 3), "eager": round(eager_ms, 3)},
        "onnxruntime_over_eager": round(onnx_ms / eager_ms, 3),
        "rounds_ms": {k: [round(v, 3) for v in vs] for k, vs in timings.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default="benchmarks/results/onnx_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "settings": {"crop": args.crop, "threads": args.threads, "batch": 1, "rounds": args.rounds,
                     "torch": torch.__version__, "onnxruntime": ort.__version__, "cpu": platform.processor()
                     or platform.machine(), "cpu_count": os.cpu_count(),
                     "load_average_at_start": os.getloadavg(),
                     "weights": "random (BatchNorm statistics randomised), BatchNorm folded into convs"},
        "models": {},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            result["models"][name] = bench_model(name, args.crop, args.threads, args.rounds, Path(folder))
            print(name, json.dumps(result["models"][name]["latency_ms"]),
                  result["models"][name]["onnxruntime_over_eager"], flush=True)
            result["settings"]["load_average_at_end"] = os.getloadavg()
            # after each model: a run cut short keeps what it measured
            write_text_atomic(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
