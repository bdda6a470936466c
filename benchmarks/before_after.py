"""Before/after pairs of `benchmarks/run.py` for the README: the same settings on an older checkout and on
this one, model by model in turn (each pair shares the machine's state of the moment), then one merged
results file per side and a markdown table of the pairs.

    git worktree add --detach ../before 7162f4e
    python benchmarks/before_after.py ../before --out benchmarks/results/before_after_cpu
    python benchmarks/before_after.py --table benchmarks/results/before_after_cpu   # table only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.merge import merge_runs  # noqa: E402
from cozoo.training.checkpoint import write_text_atomic  # noqa: E402

HERE = Path(__file__).resolve().parents[1]
MODELS = "x3d_xs,x3d_s,x3d_m,x3d_l,i3d_r50,slow_r50,slowfast_r50,r2plus1d_18"
RUN_ARGS = ("--device cpu --threads 1 --crop 112 --batches 1,4 --seconds 0.5 --iters 50 --check-crop 32 "
            "--no-plot")  # the committed cpu.json's settings


def run_pair(before: Path, out: Path, model: str, run_args: list[str]) -> None:
    """``run.py`` for one model on the old checkout, then on this one, each importing its own cozoo."""
    for side, checkout in (("before", before), ("after", HERE)):
        env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
        folder = out / side / model
        subprocess.run([sys.executable, "benchmarks/run.py", *run_args, "--models", model,
                        "--out", f"{folder}/"], cwd=checkout, env=env, check=True)


def merge_side(out: Path, side: str, models: list[str]) -> None:
    """``OUT/cpu_SIDE.json`` from the side's per-model runs, which are then removed."""
    runs = [(f"{model}/cpu.json", json.loads((out / side / model / "cpu.json").read_text()))
            for model in models]
    write_text_atomic(out / f"cpu_{side}.json", json.dumps(merge_runs(runs), indent=1) + "\n")
    shutil.rmtree(out / side)


def _clip_ms(entry: dict[str, Any]) -> float:
    """The eager clip's latency: the faster of its two timings (run.py's conservative baseline)."""
    clip = entry["modes"]["clip"]
    return min(t for t in (clip.get("latency_ms"), clip.get("latency_repeat_ms")) if t)


def table(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Markdown rows: step and clip latency before and after, speed-up over the clip, FLOPs reduction and
    their ratio (the issue's efficiency), per model present on both sides."""
    lines = ["| model | step ms before | step ms after | clip ms before / after | step vs clip before | "
             "step vs clip after | FLOPs reduction | efficiency before | efficiency after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, new in after["models"].items():
        old = before["models"].get(model)
        if old is None:
            continue
        steps = [entry["modes"]["step"]["latency_ms"] for entry in (old, new)]
        clips = [_clip_ms(entry) for entry in (old, new)]
        ratios = [clip / step for clip, step in zip(clips, steps, strict=True)]
        reduction = new["flops"]["reduction"]
        cells = [new["continual_name"], f"{steps[0]:.1f}", f"{steps[1]:.1f}",
                 f"{clips[0]:.1f} / {clips[1]:.1f}", f"{ratios[0]:.2f}", f"{ratios[1]:.2f}",
                 f"{reduction:.2f}", f"{ratios[0] / reduction:.2f}", f"{ratios[1] / reduction:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", nargs="?", type=Path, help="the older checkout")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/before_after_cpu"))
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--run-args", default=RUN_ARGS, help="run.py's settings for every run")
    parser.add_argument("--table", type=Path, help="only print the table of an earlier run's folder")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    out = (args.table or args.out).resolve()
    if args.table is None:
        if args.before is None:
            parser.error("give the older checkout (or --table FOLDER)")
        for model in models:
            run_pair(args.before.resolve(), out, model, args.run_args.split())
        for side in ("before", "after"):
            merge_side(out, side, models)
    sides = {side: json.loads((out / f"cpu_{side}.json").read_text()) for side in ("before", "after")}
    print(table(sides["before"], sides["after"]))


if __name__ == "__main__":
    main()
