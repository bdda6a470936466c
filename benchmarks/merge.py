"""Combine benchmark runs into one results file, model by model, keeping where each entry came from.

A lent GPU machine may not last a whole run, so one device's results can come from several runs. Every
ratio in an entry was measured side by side within its own run; entries from different runs are not
compared with each other. Later files win for a model present in several. Usage::

    python benchmarks/merge.py OUT.json RUN1.json RUN2.json ...   # also writes OUT.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def merge_runs(runs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One results dict from ``(label, result)`` runs of one device type; each model records its run."""
    if not runs:
        raise ValueError("no runs to merge")
    labels = [label for label, _ in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"run labels must tell the runs apart, got {labels}")
    types = {result["device"]["type"] for _, result in runs}
    if len(types) != 1:
        raise ValueError(f"runs come from different device types {sorted(types)}")
    for what, read in (("devices", lambda r: r["device"].get("name")),
                       ("torch versions", lambda r: r["versions"].get("torch")),
                       ("BatchNorm folding (--fuse-bn)", lambda r: r["settings"].get("fuse_bn", False))):
        seen = {str(read(result)) for _, result in runs}
        if len(seen) != 1:
            raise ValueError(f"runs differ in {what} ({sorted(seen)}): their results are not one device's")
    label, last = runs[-1]
    merged: dict[str, Any] = {key: value for key, value in last.items() if key != "models"}
    # The top level describes the merged file; each run's own settings are under "runs".
    merged["settings"] = {**last["settings"],
                          "models": _union(r["settings"].get("models", ()) for _, r in runs),
                          "compile_models": _union(r["settings"].get("compile_models", ()) for _, r in runs),
                          "note": "merged runs: see runs[*].settings, and each model's run"}
    merged["runs"] = [
        {"file": name, "date": result["date"], "device": result["device"], "versions": result["versions"],
         "settings": result["settings"], "models": list(result["models"])}
        for name, result in runs
    ]
    merged["models"] = {}
    for name, result in runs:
        for model, entry in result["models"].items():
            merged["models"][model] = {**entry, "run": name}
    return merged


def _union(groups: Any) -> list[str]:
    """Names from every group, each once, in first-seen order."""
    return list(dict.fromkeys(name for group in groups for name in group))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        raise SystemExit("usage: merge.py OUT.json RUN.json [RUN.json ...]")
    out = Path(args[0])
    paths = [Path(p) for p in args[1:]]
    if len({p.resolve() for p in paths}) != len(paths):
        raise SystemExit(f"the same run file is given twice: {args[1:]}")
    names = [p.name for p in paths]  # labels: file names, or the paths as given where names repeat
    labels = names if len(set(names)) == len(names) else [str(p) for p in paths]
    runs = [(label, json.loads(path.read_text())) for label, path in zip(labels, paths, strict=True)]
    merged = merge_runs(runs)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(merged, indent=1) + "\n")
    tmp.replace(out)
    from benchmarks.plot import plot_results

    print(out, plot_results(merged, out.with_suffix(".png")))


if __name__ == "__main__":
    main()
