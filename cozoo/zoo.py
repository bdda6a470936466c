"""The zoo table: published accuracy, compute and continual schedule of every registered model.

Counting FLOPs and building the continual models takes minutes on a small CPU, but the figures are
deterministic, so they are counted once (`count_zoo_figures`, written by ``benchmarks/zoo_figures.py``) and
stored in ``cozoo/zoo_figures.json``; `zoo_rows` joins them with the manifest's published accuracies in
milliseconds. The file also holds each model's listing fields (source, frames, test crop), so `zoo_names`
and `zoo_rows` answer without torch: ``cozoo models [--table]`` imports neither torch nor a model (only
`count_zoo_figures` builds models, and imports the factory when called). ``tests/test_zoo.py`` recounts a few
models live and checks the file against the registry.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

from cozoo.weights.manifest import checkpoint_owner, load_manifest

FIGURES_PATH = Path(__file__).with_name("zoo_figures.json")
# Frame rate the "first output in seconds" column assumes: Kinetics videos are mostly 25-30 fps.
VIDEO_FPS = 30.0
COUNTING = ("fvcore-convention MACs (1 multiply-add = 1 FLOP), BatchNorm counted as in train mode "
            "(PyTorchVideo's convention), batch 1 at the model's test crop; a continual step is amortised "
            "over the model's stride")


def count_zoo_figures(name: str) -> dict[str, Any]:
    """Count ``name`` now: parameters, GFLOPs per clip (regular) or per frame step (continual, plus its
    source's clip) and, for a continual model, its schedule in input frames."""
    from cozoo.factory import create_model, get_config  # torch and every model: only when counting
    from cozoo.flops import count_flops

    config = get_config(name)
    source = get_config(config.source or name)
    crop = source.test_crop
    clip_shape = (1, 3, source.frames, crop, crop)
    figures: dict[str, Any] = {"crop": crop, "clip_frames": source.frames,
                               "sampling_rate": source.sampling_rate, "source": config.source,
                               "frames": config.frames, "test_crop": config.test_crop}
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


def zoo_names(pattern: str = "*", pretrained: bool | None = None,
              figures: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Sorted stored names matching a shell-style wildcard (case-insensitive), as `cozoo.factory.list_models`
    (``pretrained``: only those with (True) or without (False) a published checkpoint) but without torch."""
    figures = load_zoo_figures() if figures is None else figures
    names = sorted(n for n in figures if fnmatch.fnmatchcase(n, pattern.lower()))
    if pretrained is None:
        return names
    return [n for n in names if (_owner(n, figures[n]) is not None) == pretrained]


def _owner(name: str, figures: dict[str, Any]) -> str | None:
    """Whose checkpoint serves ``name`` (`cozoo.weights.manifest.weights_name`, from the stored source)."""
    owner = checkpoint_owner(name)
    if owner is None and figures.get("source"):
        owner = checkpoint_owner(figures["source"])
    return owner


def _published_top1(name: str, figures: dict[str, Any]) -> tuple[str, str]:
    """(clip top-1, continual top-1), each with its protocol in brief, from the weights manifest."""
    owner = _owner(figures.get("source") or name, figures)
    if owner is None:
        return "-", "-"
    records = load_manifest()["models"][owner].get("accuracy", [])
    clip = next((r for r in records if "model" not in r and r.get("top1") is not None), None)
    wanted = f"co{name}" if figures.get("source") is None else name
    step = next((r for r in records if r.get("model") == wanted and r.get("top1") is not None), None)
    views = (clip.get("views") or 1) if clip else 0
    clip_text = f"{clip['top1']:.2f} ({views} view{'s' if views > 1 else ''})" if clip else "-"
    step_text = f"{step['top1']:.2f} (1 step, pool {_pool(wanted)})" if step else "-"
    return clip_text, step_text


def _pool(name: str) -> int | str:
    """The pool window (frames) of continual model ``name``, from the stored figures."""
    stored = load_zoo_figures().get(name)
    return stored["frames"] if stored else "?"


def zoo_rows(pattern: str = "*", figures: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per registered model matching ``pattern``: published top-1 (clip and continual), GFLOPs
    per clip and per frame, params, receptive field, delay and the first output in seconds of a
    ``VIDEO_FPS`` video (after ``sampling_rate`` video frames per model step)."""
    figures = load_zoo_figures() if figures is None else figures
    rows = []
    for name in zoo_names(pattern, figures=figures):
        f = figures[name]
        clip_top1, step_top1 = _published_top1(name, f)
        continual = "first_output" in f
        frames_needed = ((f["first_output"] + 1) if continual else f["clip_frames"]) * f["sampling_rate"]
        rows.append({
            "name": name, "top1_clip": clip_top1, "top1_continual": step_top1,
            "gflops_clip": f["gflops_clip"], "gflops_frame": f.get("gflops_frame"),
            "params_m": f["params"] / 1e6, "receptive_field": f.get("receptive_field"),
            "delay": f.get("delay"), "first_output_s": frames_needed / VIDEO_FPS,
        })
    return rows
