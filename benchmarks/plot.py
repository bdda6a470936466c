"""Plot a benchmark result: per model, step-mode speed-up over the sliding-clip regular model against the
FLOPs reduction (with the ideal y = x and the target y = x / 2), and speed-up over continual-inference."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

# (speed-up key in the results, label, marker): left panel against the regular model, right against the peer
CLIP_SERIES = (
    ("step_vs_clip", "step (eager) vs clip (eager)", "o"),
    ("step_graph_vs_clip", "step (CUDA graphs) vs clip (eager)", "s"),
    ("step_graph_vs_clip_graph", "step (CUDA graphs) vs clip (CUDA graph)", "^"),
    ("step_graph_compiled_vs_clip", "step (compiled + CUDA graphs) vs clip (eager)", "D"),
    ("step_graph_compiled_vs_clip_graph", "step (compiled + CUDA graphs) vs clip (CUDA graph)", "v"),
)
PEER_SERIES = (
    ("step_vs_peer", "step (eager)"),
    ("step_graph_vs_peer", "step (CUDA graphs)"),
    ("step_graph_compiled_vs_peer", "step (compiled + CUDA graphs)"),
)


def plot_results(result: dict[str, Any], path: Path) -> Path:
    """Write the two-panel PNG for one results dict (as written by ``benchmarks/run.py``)."""
    models = result["models"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    reductions = [entry["flops"]["reduction"] for entry in models.values()]
    top = max(reductions, default=1.0) * 1.1
    left.plot([1, top], [1, top], color="grey", lw=1, label="y = FLOPs reduction")
    left.plot([1, top], [0.5, top / 2], color="grey", lw=1, ls="--", label="target: y = reduction / 2")
    for key, label, marker in CLIP_SERIES:
        points = [(entry["flops"]["reduction"], entry["speedup"][key], name)
                  for name, entry in models.items() if key in entry["speedup"]]
        if not points:
            continue
        left.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, label=label, zorder=3)
        for x, y, name in points:
            left.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    left.set_xscale("log")
    left.set_yscale("log")
    for axis in (left.xaxis, left.yaxis):
        axis.set_major_formatter(ScalarFormatter())
    left.set_xlabel("FLOPs reduction (regular GMACs per clip / continual GMACs per frame)")
    left.set_ylabel("speed-up over the regular model on a sliding clip (latency, batch 1)")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)

    names = list(models)
    bars = [(key, label, [models[n]["speedup"].get(key) for n in names]) for key, label in PEER_SERIES]
    bars = [(mode, label, values) for mode, label, values in bars if any(v is not None for v in values)]
    width = 0.8 / max(len(bars), 1)
    for k, (_, label, values) in enumerate(bars):
        offset = (k - (len(bars) - 1) / 2) * width
        right.bar([i + offset for i in range(len(names))], [v or 0.0 for v in values], width, label=label)
    right.axhline(1.0, color="grey", lw=1)
    right.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    right.set_ylabel("speed-up over continual-inference 1.2.4 (latency, batch 1)")
    if bars:
        right.legend(fontsize=8)
    for i, name in enumerate(names):
        if not models[name]["peer"].get("supported"):
            right.annotate("n/a", (i, 1.0), ha="center", va="bottom", fontsize=7)

    device = result["device"]
    crop = result["settings"].get("crop") or "test crop"
    runs = f", {len(result['runs'])} runs merged (see JSON)" if "runs" in result else ""
    fig.suptitle(f"{device.get('name', device['type'])} ({device['type']}), crop {crop}, "
                 f"{result['date'][:10]}{runs}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    """``python benchmarks/plot.py results.json [out.png]``: re-plot a saved result."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("usage: plot.py RESULTS.json [OUT.png]")
    source = Path(args[0])
    result = json.loads(source.read_text())
    print(plot_results(result, Path(args[1]) if len(args) > 1 else source.with_suffix(".png")))


if __name__ == "__main__":
    main()
