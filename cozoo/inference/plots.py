"""Plots of streamed predictions, drawn with matplotlib's Agg renderer outside pyplot (no global state)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cozoo.data.video import PathLike
from cozoo.inference.video import FramePrediction

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_probabilities(
    predictions: Sequence[FramePrediction],
    class_names: Sequence[str],
    path: PathLike,
    top: int = 5,
    title: str | None = None,
    fps: float | None = None,
    truth: Sequence[tuple[int, int, str]] = (),
) -> Path:
    """Write a PNG of the probabilities over time of the ``top`` classes with the highest peak probability
    (y axis up to just above that peak, at most 1). x is the video frame each prediction is about
    (`plotted_frame`), not the later frame at which it was emitted; with ``fps``, a second axis in seconds.
    Each prediction is marked, so that one prediction still shows. ``truth``: ``(first_frame, last_frame,
    class)`` spans of a labelled video, shaded in their class's line colour (grey if not plotted)."""
    if not predictions:
        raise ValueError("no predictions to plot")
    probs = torch.stack([p.probs for p in predictions])  # (steps, classes)
    if probs.shape[1] != len(class_names):
        raise ValueError(f"{probs.shape[1]} class scores but {len(class_names)} class names")
    frames = [plotted_frame(p) for p in predictions]
    chosen = probs.max(dim=0).values.argsort(descending=True)[: max(1, top)].tolist()
    fig = new_figure(figsize=(9, 4.5))
    ax = fig.subplots()
    colours = {}
    for index in chosen:
        (line,) = ax.plot(frames, probs[:, index].numpy(), label=class_names[index], linewidth=1.6,
                          marker="o", markersize=3 if len(frames) > 1 else 6)
        colours[class_names[index]] = line.get_color()
    for first, last, label in truth:
        ax.axvspan(first - 0.5, last + 0.5, color=colours.get(label, "grey"), alpha=0.15, linewidth=0)
    if truth:
        ax.text(0.99, 0.02, "shaded: the class on screen", transform=ax.transAxes, ha="right",
                fontsize="small")
    ax.set_xlabel("video frame each prediction is centred on (it is emitted `delay` frames later)")
    if fps:
        seconds = ax.secondary_xaxis("top", functions=(lambda f: f / fps, lambda s: s * fps))
        seconds.set_xlabel(f"seconds (at {fps:g} fps)")
    ax.set_ylabel("probability")
    ax.set_ylim(0.0, min(1.0, 1.1 * probs[:, chosen].max().item()))
    margin = max(1.0, 0.02 * (max(frames) - min(frames)))
    ax.set_xlim(min(frames) - margin, max(frames) + margin)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small", framealpha=0.8)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def plotted_frame(prediction: FramePrediction) -> int:
    """The video frame a prediction is about: the middle of its source clip (the lower middle frame of an
    even clip, see `cozoo.continual.timing`), falling back on the frame that emitted it for a prediction
    without one."""
    return int(getattr(prediction, "centre_frame", prediction.frame_index))


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A matplotlib figure drawn by the Agg renderer, outside pyplot (no global backend or figure state)."""
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        raise RuntimeError("writing PNG plots needs matplotlib: pip install matplotlib") from None
    return Figure(figsize=figsize, dpi=100, layout="tight")


def save_figure(fig: Figure, path: PathLike) -> Path:
    """Save ``fig`` as a PNG at ``path`` (parent folders created); another file extension is refused rather
    than given PNG bytes."""
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ValueError(f"{str(out)!r}: plots are written as PNG; give a file name ending in .png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(os.fspath(out), format="png")
    return out
