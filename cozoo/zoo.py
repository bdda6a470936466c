"""The zoo table: published accuracy, compute and continual schedule of every registered model.

Counting FLOPs and building the continual models takes minutes on a small CPU, but the figures are
deterministic, so they are counted once (`count_zoo_figures`, written by ``benchmarks/zoo_figures.py``) and
stored in ``cozoo/zoo_figures.json``; `zoo_rows` joins them with the manifest's published accuracies in
milliseconds. ``tests/test_zoo.py`` recounts a few models live and checks the file covers the registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cozoo.factory import create_model, get_config, list_models
from cozoo.flops import count_flops
from cozoo.weights.manifest import manifest_entry

FIGURES_PATH = Path(__file__).with_name("zoo_figures.json")
# Frame rate the "first output in seconds" column assumes: Kinetics videos are mostly 25-30 fps.
VIDEO_FPS = 30.0
COUNTING = ("fvcore-convention MACs (1 multiply-add = 1 FLOP), BatchNorm counted as in train mode "
            "(PyTorchVideo's convention), batch 1 at the model's test crop; a continual step is amortised "
            "over the model's stride")


def count_zoo_figures(name: str) -> dict[str, Any]:
    """Count ``name`` now: parameters, GFLOPs per clip (regular) or per frame step (continual, plus its
    source's clip) and, for a continual model, its schedule in input frames."""
    config = get_config(name)
    source = get_config(config.source or name)
    crop = source.test_crop
    clip_shape = (1, 3, source.frames, crop, crop)
    figures: dict[str, Any] = {"crop": crop, "clip_frames": source.frames,
                               "sampling_rate": source.sampling_rate}
    regular = create_model(source.name)
    clip = count_flops(regular, clip_shape, batchnorm="train")
    figures["gflops_clip"] = round(clip.gmacs, 4)
    if not config.continual:
        figures["params"] = clip.params
        return figures
    model = create_model(name)
    step = count_flops(model, (1, 3, crop, crop), batchnorm="train")
    figures.update(
        params=step.params,
        gflops_frame=round(step.gmacs, 4),
        gflops_costliest_step=round(step.peak_step_macs / 1e9, 4),
        pool_window=config.frames,
        receptive_field=int(model.receptive_field),
        delay=int(model.delay),
        first_output=int(model.first_output),
        stride=int(model.stride),
    )
    return figures


def load_zoo_figures(path: Path = FIGURES_PATH) -> dict[str, dict[str, Any]]:
    """The stored figures, by model name."""
    return json.loads(path.read_text(encoding="utf-8"))["models"]


def write_zoo_figures(figures: dict[str, dict[str, Any]], path: Path = FIGURES_PATH) -> Path:
    """Store ``figures`` atomically (a temporary file, then a rename)."""
    document = {"counting": COUNTING, "models": dict(sorted(figures.items()))}
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def _published_top1(name: str) -> tuple[str, str]:
    """(clip top-1, continual top-1), each with its protocol in brief, from the weights manifest."""
    config = get_config(name)
    entry = manifest_entry(config.source or name)
    if entry is None:
        return "-", "-"
    records = entry.get("accuracy", [])
    clip = next((r for r in records if "model" not in r and r.get("top1") is not None), None)
    wanted = name if config.continual else f"co{name}"
    step = next((r for r in records if r.get("model") == wanted and r.get("top1") is not None), None)
    views = (clip.get("views") or 1) if clip else 0
    clip_text = f"{clip['top1']:.2f} ({views} view{'s' if views > 1 else ''})" if clip else "-"
    step_text = f"{step['top1']:.2f} (1 step, pool {get_config(wanted).frames})" if step else "-"
    return clip_text, step_text


def zoo_rows(pattern: str = "*", figures: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per registered model matching ``pattern``: published top-1 (clip and continual), GFLOPs
    per clip and per frame, params, receptive field, delay and the first output in seconds of a
    ``VIDEO_FPS`` video (after ``sampling_rate`` video frames per model step)."""
    figures = load_zoo_figures() if figures is None else figures
    rows = []
    for name in list_models(pattern):
        if name not in figures:
            raise KeyError(f"{name} is not in {FIGURES_PATH.name}: run benchmarks/zoo_figures.py")
        f = figures[name]
        clip_top1, step_top1 = _published_top1(name)
        continual = "first_output" in f
        frames_needed = ((f["first_output"] + 1) if continual else f["clip_frames"]) * f["sampling_rate"]
        rows.append({
            "name": name, "top1_clip": clip_top1, "top1_continual": step_top1,
            "gflops_clip": f["gflops_clip"], "gflops_frame": f.get("gflops_frame"),
            "params_m": f["params"] / 1e6, "receptive_field": f.get("receptive_field"),
            "delay": f.get("delay"), "first_output_s": frames_needed / VIDEO_FPS,
        })
    return rows
