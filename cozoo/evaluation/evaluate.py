"""Evaluate a video classifier on a Kinetics-layout dataset under three protocols.

* ``clip``: one centre clip with a centre crop per video (the Co3D table's protocol for regular models).
* ``multiview``: ``clips`` uniformly spaced clips x ``crops`` spatial crops per video, softmax averaged
  (the published 30-view protocol is 10 x 3).
* ``stream``: the continual counterpart of the same weights steps through each video frame by frame
  (every ``sampling_rate``-th frame, each preprocessed like a clip frame; see `cozoo.inference.video`).
  ``stream_last`` scores the prediction at the video's last fed frame, ``stream_mean`` the softmax
  averaged over all predictions after warm-up. A video shorter than the warm-up is extended by
  repeating its last frame (the clip samplers' rule for short videos) and counted in ``padded_videos``.
  Each prediction stands for its source clip, which starts ``delay`` steps before it (see
  `cozoo.continual.timing`): the last prediction's clip ends ``delay - clip_length + 1`` steps before the
  last fed frame.
* ``co3d``: the Co3D table's protocol for continual models: one centre clip of ``step + 1`` frames per
  video (the last frame repeated for short videos), stepped from the source's zero padding
  (``warmup="padded"``), scored by the output at step ``step = max(delay, frame_delay - 1)`` (Co3D's
  ``max(receptive_field - padding - 1, forward_frame_delay - 1)``; e.g. 91 for CoX3D-S_64).

Accuracies are fractions in [0, 1]; "top5" is top-min(5, classes). Confusion matrices count videos with
rows = true class and columns = predicted (top-1) class.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from cozoo import distributed
from cozoo.continual import to_continual
from cozoo.continual.convert import check_pool_window
from cozoo.data.kinetics import CorruptVideoWarning, KineticsDataset, read_annotations
from cozoo.data.loader import build_dataset
from cozoo.data.video import PathLike, VideoDecodeError
from cozoo.evaluation.modes import DEFAULT_MODES, MODES
from cozoo.factory import create_model, get_config
from cozoo.inference.plots import new_figure, save_figure
from cozoo.inference.video import FrameTransform, VideoStreamer, frame_transform, stream_video_to_end
from cozoo.labels import class_names as label_set_names
from cozoo.layers.classifier import classifier
from cozoo.models.registry import ModelConfig
from cozoo.training.config import ConfigError, FinetuneConfig
from cozoo.training.data import clip_settings
from cozoo.weights.converters import CheckpointMismatchError
from cozoo.weights.load import WeightsFormatError, fit_state_dict, read_checkpoint
from cozoo.weights.manifest import manifest_entry

TOP_K = (1, 5)


# -- checkpoints and models ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """Weights read from a file. ``format`` is the published format of a converted-on-load file (None for
    cozoo's own layout); ``class_names`` come from a fine-tuning checkpoint's ``label_map``."""

    path: str
    state_dict: dict[str, torch.Tensor]
    format: str | None = None
    class_names: list[str] | None = None
    config: dict[str, Any] | None = None


def names_from_label_map(label_map: Mapping[str, int] | Sequence[str]) -> list[str]:
    """Class names by index from ``{name: index}`` (indices 0..C-1, each once) or a list of names."""
    if isinstance(label_map, Mapping):
        names = sorted(label_map, key=label_map.__getitem__)
        if [label_map[n] for n in names] != list(range(len(names))):
            raise ValueError(f"label map indices must be 0..{len(names) - 1}, each used once")
    else:
        names = list(label_map)
    if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ValueError("a label map needs distinct class-name strings")
    return names


def load_checkpoint(path: PathLike) -> Checkpoint:
    """Read a checkpoint: a fine-tuning file ``{"model": state_dict, "label_map"?, "config"?}``, a plain
    state dict, or a published file (``.pyth``/``.pth``/``.safetensors``, see `cozoo.weights.load`).

    Files are read with ``torch.load(weights_only=True)``: no code from a checkpoint is ever run.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {str(file)!r}")
    if file.suffix != ".safetensors":
        try:
            obj = torch.load(file, map_location="cpu", weights_only=True)
        except Exception:  # unreadable: read_checkpoint below explains why
            obj = None
        if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
            state_dict = dict(obj["model"])
            if not state_dict or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
            ):
                raise WeightsFormatError(f"{file}: 'model' does not hold a state dict (names to tensors)")
            label_map = obj.get("label_map")
            config = obj.get("config")
            return Checkpoint(
                str(file),
                state_dict,
                class_names=None if label_map is None else names_from_label_map(label_map),
                config=dict(config) if isinstance(config, Mapping) else None,
            )
    state_dict, fmt = read_checkpoint(file)
    return Checkpoint(str(file), state_dict, fmt)


@dataclass
class LoadedModel:
    """A regular (clip) model with its weights, the label names of its outputs and the continual pool
    window; `continual` converts it into its streaming counterpart with the same weights."""

    name: str
    model: nn.Module
    config: ModelConfig
    class_names: list[str]
    pool_window: int
    checkpoint: str | None = None
    pretrained: bool = False
    _continual: nn.Module | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def continual(self) -> nn.Module:
        """The continual model (built once): ``to_continual`` of the regular model, same weights."""
        if self._continual is None:
            self._continual = to_continual(self.model, pool_window=self.pool_window).eval()
        return self._continual


def load_model(
    name: str,
    checkpoint: PathLike | None = None,
    pretrained: bool = False,
    class_names: Sequence[str] | None = None,
    pool_window: int | None = None,
    **builder_kwargs: Any,
) -> LoadedModel:
    """Build ``name`` with weights from ``checkpoint`` (a file) or the published ones (``pretrained``).

    A continual name (e.g. ``cox3d_s_64``) loads its regular source model (same state-dict keys) and uses
    its window as the default ``pool_window``. A fine-tuning checkpoint (``cozoo finetune``) builds the
    model with its recipe's ``model.kwargs`` (explicit ``builder_kwargs`` win) and its clip settings
    (frames, sampling rate, crops, mean/std) replace the model config's. The number of classes follows
    the checkpoint's classifier; names come from ``class_names``, else the checkpoint's label map, else
    the config's label set (``kinetics400`` / ``sports1m``), else ``class_0 ...``.
    """
    if checkpoint is not None and pretrained:
        raise ValueError("pass either a checkpoint file or pretrained=True, not both")
    if pool_window is not None:
        check_pool_window(pool_window)
    config = get_config(name)
    regular_name = config.source or name
    regular_config = get_config(regular_name)
    ckpt = load_checkpoint(checkpoint) if checkpoint is not None else None
    recipe = _finetuning_recipe(ckpt, regular_name) if ckpt is not None else None
    if recipe is not None:
        builder_kwargs = {**recipe.model.kwargs, **builder_kwargs}
        regular_config = _with_clip_settings(regular_config, recipe)
    model = create_model(regular_name, pretrained=pretrained, **builder_kwargs)
    names = list(class_names) if class_names is not None else (ckpt.class_names if ckpt else None)
    if ckpt is not None:
        fmt = ckpt.format
        entry = manifest_entry(regular_name)
        own_keys = set(model.state_dict())
        shared = len(own_keys & set(ckpt.state_dict))
        if fmt is None and entry is not None and shared < len(ckpt.state_dict) / 2:  # not cozoo's layout
            fmt = entry["format"]
        try:
            fit_state_dict(model, regular_config, ckpt.state_dict, fmt, take_class_count=True)
        except CheckpointMismatchError as error:
            raise CheckpointMismatchError(
                f"{ckpt.path} does not fit {regular_name} as built here (builder arguments "
                f"{builder_kwargs or 'default'}); a checkpoint of a model built with other arguments "
                f"(widths, depths) needs the same ones. {error}"
            ) from None
    head, layer = classifier(model)
    num_classes = layer.out_features
    if names is None:
        names = _default_names(regular_config, num_classes)
    elif len(names) != num_classes:
        whose = f"the checkpoint's classifier {head + '.weight'!r} has" if ckpt else "the model has"
        raise ValueError(f"{len(names)} class names but {whose} {num_classes} outputs")
    window_in_name = config.continual and config.frames != get_config(regular_name).frames  # e.g. _64
    return LoadedModel(
        name=name,
        model=model.eval(),
        config=regular_config,
        class_names=list(names),
        pool_window=int(pool_window or (config.frames if window_in_name else regular_config.frames)),
        checkpoint=None if ckpt is None else ckpt.path,
        pretrained=bool(pretrained),
    )


def _finetuning_recipe(ckpt: Checkpoint, regular_name: str) -> FinetuneConfig | None:
    """The ``cozoo finetune`` recipe stored in ``ckpt`` (None for other checkpoints); it must have
    fine-tuned ``regular_name``."""
    if ckpt.config is None or not isinstance(ckpt.config.get("model"), Mapping):
        return None
    try:
        recipe = FinetuneConfig.from_dict(ckpt.config, validate=False)  # as the run saved it
    except ConfigError as error:
        raise ValueError(f"{ckpt.path}: its fine-tuning config is not readable: {error}") from None
    if recipe.model.name != regular_name:
        raise ValueError(
            f"{ckpt.path} was fine-tuned from {recipe.model.name!r}, not {regular_name!r}: load it as "
            f"{recipe.model.name!r} (or its continual name 'co{recipe.model.name}')"
        )
    return recipe


def _with_clip_settings(config: ModelConfig, recipe: FinetuneConfig) -> ModelConfig:
    """``config`` with the recipe's clip geometry and normalisation (what the model was fine-tuned on)."""
    clips = clip_settings(recipe.data, config)
    return dataclasses.replace(
        config, frames=clips.frames, sampling_rate=clips.sampling_rate, train_crop=clips.train_crop,
        test_crop=clips.test_crop, mean=clips.mean, std=clips.std, test_short_side=clips.test_short_side,
        target_fps=clips.target_fps, test_resize=clips.test_resize,
    )


def _default_names(config: ModelConfig, num_classes: int) -> list[str]:
    if num_classes == config.num_classes:
        try:
            return label_set_names(config.dataset)
        except ValueError:
            pass
    return [f"class_{i}" for i in range(num_classes)]


# -- metric arithmetic --------------------------------------------------------------------------------


def topk_accuracy(scores: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = TOP_K) -> dict[str, float]:
    """``{"top1": ..., "top5": ...}``: fraction of rows whose target is among the ``k`` highest scores
    (``k`` capped at the number of classes). Ties rank the lower class index first."""
    if scores.ndim != 2 or targets.shape != scores.shape[:1]:
        raise ValueError(f"expected scores (N, C) and targets (N,), got {tuple(scores.shape)} and "
                         f"{tuple(targets.shape)}")
    if scores.shape[0] == 0:
        raise ValueError("no predictions to score")
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    out = {}
    for k in ks:
        hits = (order[:, : min(k, scores.shape[1])] == targets[:, None]).any(dim=1)
        out[f"top{k}"] = hits.double().mean().item()
    return out


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(C, C)`` counts: entry ``[t, p]`` is how many samples of true class ``t`` were predicted ``p``."""
    for what, values in (("predictions", predictions), ("targets", targets)):
        if values.numel() and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{what} must be class indices in 0..{num_classes - 1}")
    flat = targets.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def score(probs: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """Top-k accuracies and the confusion matrix (as nested lists) of per-video class scores."""
    predictions = torch.sort(probs, dim=1, descending=True, stable=True).indices[:, 0]
    matrix = confusion_matrix(predictions, targets, probs.shape[1])
    return {**topk_accuracy(probs, targets), "num_videos": int(targets.numel()),
            "confusion_matrix": matrix.tolist()}


def plot_confusion_matrix(
    matrix: torch.Tensor | Sequence[Sequence[int]], class_names: Sequence[str], path: PathLike,
    title: str | None = None,
) -> Path:
    """Write a PNG of a confusion matrix (rows: true class, columns: predicted), shaded by row fraction;
    class names and counts are drawn when there are few classes."""
    counts = torch.as_tensor(matrix, dtype=torch.float64)
    num = counts.shape[0]
    if counts.shape != (num, num) or num != len(class_names):
        raise ValueError(f"confusion matrix {tuple(counts.shape)} does not match {len(class_names)} classes")
    fractions = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    side = min(4.0 + 0.45 * num, 16.0)
    fig = new_figure(figsize=(side + 1.5, side))
    ax = fig.subplots()
    image = ax.imshow(fractions.numpy(), cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if num <= 40:
        ax.set_xticks(range(num), class_names, rotation=60, ha="right", fontsize="small")
        ax.set_yticks(range(num), class_names, fontsize="small")
    if num <= 20:
        for t in range(num):
            for p in range(num):
                if counts[t, p]:
                    ax.text(p, t, f"{int(counts[t, p])}", ha="center", va="center", fontsize="small",
                            color="white" if fractions[t, p] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "confusion matrix")
    return save_figure(fig, path)


# -- predictions --------------------------------------------------------------------------------------


def _class_scores(model: nn.Module, clips: torch.Tensor) -> torch.Tensor:
    logits = model(clips)
    if logits.ndim != 2:
        raise ValueError(
            f"the model returned shape {tuple(logits.shape)}; evaluation needs (N, classes) logits"
        )
    return logits.float().softmax(dim=1)


@torch.inference_mode()
def predict_videos(
    model: nn.Module,
    batches: Iterable[Sequence[torch.Tensor]],
    num_videos: int,
    num_classes: int,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax averaged over each video's views: ``batches`` yield ``(clips, labels, video_indices)``.

    Returns ``(probs (V, C), targets (V,))``. Views with video index -1 (a dataset's stand-ins for views it
    could not decode) are left out; a video left with no view gets target -1 (see `evaluated`). Under
    torchrun each process passes its share of the views (`cozoo.distributed.ShardSampler`): the sums are
    gathered, so every process returns the whole result.
    """
    sums = torch.zeros(num_videos, num_classes, dtype=torch.float64)
    counts = torch.zeros(num_videos, dtype=torch.float64)
    targets = torch.full((num_videos,), -1, dtype=torch.long)
    for clips, labels, videos in batches:
        probs = _class_scores(model, clips.to(device)).cpu().double()
        if probs.shape[1] != num_classes:
            raise ValueError(f"the model has {probs.shape[1]} outputs, expected {num_classes} classes")
        videos = torch.as_tensor(videos, dtype=torch.long)
        real = videos >= 0
        videos, probs, labels = videos[real], probs[real], torch.as_tensor(labels, dtype=torch.long)[real]
        sums.index_add_(0, videos, probs)
        counts.index_add_(0, videos, torch.ones(len(videos), dtype=torch.float64))
        targets[videos] = labels
    distributed.all_reduce(sums)
    distributed.all_reduce(counts)
    distributed.all_reduce(targets, "max")
    return (sums / counts.clamp_min(1)[:, None]).float(), targets


def evaluated(
    probs: torch.Tensor, targets: torch.Tensor, what: str
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The rows of videos that were evaluated (target >= 0), and how many were not (warned about)."""
    keep = targets >= 0
    dropped = int((~keep).sum())
    if dropped:
        warnings.warn(f"{what}: {dropped} video(s) left out, as they failed to decode part-way",
                      CorruptVideoWarning, stacklevel=2)
    if not keep.any():
        raise RuntimeError(f"{what}: no video could be decoded")
    return probs[keep], targets[keep], dropped


@torch.inference_mode()
def predict_streams(
    continual: nn.Module,
    videos: Sequence[tuple[PathLike, int]],
    transform: FrameTransform,
    sampling_rate: int,
    num_classes: int,
    device: torch.device | str = "cpu",
    target_fps: float | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Step ``continual`` through each ``(path, label)`` video (by time with ``target_fps``, see
    `VideoStreamer`); per video, the softmax of the last
    prediction and the mean softmax over all predictions. Returns ``last``, ``mean`` (V, C), ``targets``
    (V,) and ``padded_videos`` (videos shorter than the warm-up). A video that fails to decode part-way
    gets target -1 (see `evaluated`). Under torchrun each process streams its share of the videos
    (`cozoo.distributed.shard`) and the results are gathered. ``progress``: a bar on standard error."""
    streamer = VideoStreamer(continual, transform, sampling_rate, device, target_fps=target_fps)
    last = torch.zeros(len(videos), num_classes)
    mean = torch.zeros(len(videos), num_classes)
    labels = torch.tensor([label for _, label in videos], dtype=torch.long)
    targets = torch.full_like(labels, -1)  # filled in by the process that streams the video
    padded = 0
    shard = distributed.shard(range(len(videos)))
    for row in tqdm(shard, unit="video", desc="stream", leave=False, file=sys.stderr, disable=not progress):
        path = videos[row][0]
        targets[row] = labels[row]
        try:
            predictions = stream_video_to_end(streamer, path)
        except (FileNotFoundError, VideoDecodeError):
            targets[row] = -1
            continue
        padded += streamer.padded > 0
        stacked = torch.stack([p.probs for p in predictions])
        if stacked.shape[1] != num_classes:
            raise ValueError(f"the model has {stacked.shape[1]} outputs, expected {num_classes} classes")
        last[row], mean[row] = stacked[-1], stacked.mean(dim=0)
    counts = distributed.all_reduce(torch.tensor([padded]))
    for gathered in (last, mean):
        distributed.all_reduce(gathered)
    distributed.all_reduce(targets, "max")
    return {"last": last, "mean": mean, "targets": targets, "padded_videos": int(counts[0])}


def co3d_step(continual: nn.Module, frame_delay: int = 0) -> int:
    """The step the ``co3d`` protocol scores: ``max(delay, frame_delay - 1)``, which must be a step on
    which the model emits with a padded warm-up (``delay`` plus a multiple of its stride)."""
    if frame_delay < 0:
        raise ValueError(f"frame_delay must be >= 0, got {frame_delay}")
    delay, stride = int(continual.delay), int(continual.stride)
    step = max(delay, frame_delay - 1)
    if (step - delay) % stride:
        raise ValueError(f"frame_delay {frame_delay} scores step {step}, on which the model emits nothing "
                         f"(it emits at steps {delay} + k * {stride}); pass a frame_delay one above such a "
                         "step")
    return step


class PaddedLastStep(nn.Module):
    """Clip (N, C, T, H, W) -> the continual model's output at step T - 1 of a stream started from the
    source's zero padding (``warmup="padded"``): the ``co3d`` protocol's score of a clip."""

    def __init__(self, continual: nn.Module) -> None:
        super().__init__()
        self.continual = continual

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        self.continual.reset(warmup="padded")
        for t in range(clips.shape[2] - 1):
            self.continual.forward_step(clips[:, :, t])
        out = self.continual.forward_step(clips[:, :, -1])
        if out is None:
            raise ValueError(f"the model emits nothing at step {clips.shape[2] - 1} (see co3d_step)")
        return out.flatten(1)


# -- the whole evaluation -----------------------------------------------------------------------------


def evaluate(
    loaded: LoadedModel,
    annotations: PathLike,
    video_root: PathLike,
    *,
    split: str | None = None,
    modes: Sequence[str] = DEFAULT_MODES,
    num_clips: int = 10,
    num_crops: int = 3,
    crop: int | None = None,
    sampling_rate: int | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    out_dir: PathLike | None = None,
    progress: bool = False,
    frame_delay: int = 0,
) -> dict[str, Any]:
    """Evaluate ``loaded`` on the videos of ``annotations`` under ``modes``; returns the metrics dict.

    ``crop`` overrides the test crop (and short side); ``sampling_rate`` the streaming frame step (default:
    the model's clip sampling rate); ``frame_delay`` is Co3D's ``forward_frame_delay`` for ``co3d`` (see
    `co3d_step`). With ``out_dir``, writes ``metrics.json`` and one ``confusion_<result>.png`` per result
    there (rank 0 only). ``progress``: a bar per protocol on standard error.

    Under torchrun (inside `cozoo.distributed.session`) every process probes the videos, scores its share
    of them and gathers the rest: the metrics are those of one process (``seconds`` aside; sums of softmax
    scores may differ in the last float bits).
    """
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"unknown evaluation mode(s) {unknown}; choose from {', '.join(MODES)}")
    sizes = {"num_clips": num_clips, "batch_size": batch_size, "crop": crop, "sampling_rate": sampling_rate}
    for what, value in sizes.items():
        if value is not None and value < 1:
            raise ValueError(f"{what} must be a positive integer, got {value}")
    records = read_annotations(annotations, split)
    total_rows = len(records)
    if not records:
        raise ValueError(f"no videos in {str(annotations)!r}" + (f" for split {split!r}" if split else ""))
    label_map = {name: index for index, name in enumerate(loaded.class_names)}
    outside = sorted({r.label for r in records} - set(label_map))
    if len(outside) == len({r.label for r in records}):
        raise ValueError(
            f"none of the labels of {str(annotations)!r} (e.g. {outside[:5]}) is a class of the model "
            f"(e.g. {loaded.class_names[:5]}); pass a checkpoint with a label map or matching class names"
        )
    if outside:  # e.g. a model fine-tuned on a subset, evaluated on the full validation list
        left_out = sum(r.label in outside for r in records)
        warnings.warn(f"{left_out} video(s) of {len(outside)} label(s) that are not classes of the model "
                      f"left out (e.g. {outside[:5]})", stacklevel=2)
        records = [r for r in records if r.label in label_map]
    config, model = loaded.config, loaded.model.to(device)
    common = dict(config=config, crop=crop, label_map=label_map, return_video_index=True)
    dataset = build_dataset(records, video_root, training=False, probe=True, **common)  # drops bad videos
    kept = [record for record, _ in dataset.videos]
    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}

    def run_views(
        ds: KineticsDataset, what: str, net: nn.Module = model
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loader = DataLoader(ds, batch_size=batch_size, sampler=distributed.ShardSampler(len(ds)),
                            num_workers=num_workers)
        batches = tqdm(loader, total=len(loader), unit="batch", desc=what, leave=False, file=sys.stderr,
                       disable=not progress)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = predict_videos(net, batches, len(ds.videos), loaded.num_classes, device)
        _warn_once_per_video(caught, told_short)
        told_short.update(_short_videos(caught))
        return result

    def scored(what: str, probs: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
        probs, targets, dropped = evaluated(probs, targets, what)
        return {**score(probs, targets), "undecodable_videos": dropped}

    told_short: set[str] = set()  # videos the clip protocols found shorter than declared (warned once)
    if "clip" in modes:
        start = time.perf_counter()
        results["clip"] = {**scored("clip", *run_views(dataset, "clip")), "clips": 1, "crops": 1}
        seconds["clip"] = time.perf_counter() - start
    if "multiview" in modes:
        start = time.perf_counter()
        views = build_dataset(kept, video_root, training=False, probe=False, num_clips=num_clips,
                              num_crops=num_crops, **common)
        results["multiview"] = {**scored("multiview", *run_views(views, "multiview")), "clips": num_clips,
                                "crops": num_crops}
        seconds["multiview"] = time.perf_counter() - start
    if "stream" in modes:
        start = time.perf_counter()
        rate = config.sampling_rate if sampling_rate is None else sampling_rate
        continual = loaded.continual().to(device)
        videos = [(path, label_map[record.label]) for record, path in dataset.videos]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = predict_streams(continual, videos, frame_transform(config, crop), rate, loaded.num_classes,
                                  device, target_fps=config.target_fps, progress=progress)
        _warn_once_per_video(caught, told_short)
        facts = {"sampling_rate": rate, "target_fps": config.target_fps, "pool_window": loaded.pool_window,
                 "first_output_step": int(continual.first_output), "padded_videos": out["padded_videos"]}
        results["stream_last"] = {**scored("stream", out["last"], out["targets"]), **facts}
        with warnings.catch_warnings():  # the same videos as stream_last: warned once
            warnings.simplefilter("ignore", CorruptVideoWarning)
            results["stream_mean"] = {**scored("stream", out["mean"], out["targets"]), **facts}
        seconds["stream"] = time.perf_counter() - start
    if "co3d" in modes:
        start = time.perf_counter()
        continual = loaded.continual().to(device)
        step = co3d_step(continual, frame_delay)
        rate = config.sampling_rate if sampling_rate is None else sampling_rate
        clips = build_dataset(kept, video_root, training=False, probe=False, frames=step + 1,
                              sampling_rate=rate, **common)
        views = run_views(clips, "co3d", PaddedLastStep(continual))
        results["co3d"] = {**scored("co3d", *views), "clips": 1, "crops": 1, "frames": step + 1,
                           "scored_step": step, "warmup": "padded", "sampling_rate": rate,
                           "pool_window": loaded.pool_window}
        seconds["co3d"] = time.perf_counter() - start
    metrics = {
        "model": loaded.name,
        "regular_model": config.name,
        "checkpoint": loaded.checkpoint,
        "pretrained": loaded.pretrained,
        "annotations": str(annotations),
        "split": split,
        "num_videos": len(kept),
        "skipped_videos": len(records) - len(kept),
        "outside_classes_videos": total_rows - len(records),
        "missing_videos": len(dataset.missing),
        "undecodable_videos": len(dataset.corrupt),
        "crop": int(crop or config.test_crop),
        "target_fps": config.target_fps,  # None: clips and streams sampled by frame index
        "classes": loaded.class_names,
        "results": results,
        "seconds": seconds,
    }
    if out_dir is not None and distributed.current().main:
        write_report(metrics, out_dir)
    return metrics


def _short_videos(caught: Sequence[warnings.WarningMessage]) -> set[str]:
    """Paths of the videos a `CorruptVideoWarning` of ``caught`` reports as shorter than declared."""
    return {str(w.message).split("'")[1] for w in caught
            if issubclass(w.category, CorruptVideoWarning) and str(w.message).startswith("'")}


def _warn_once_per_video(caught: Sequence[warnings.WarningMessage], told: set[str]) -> None:
    """Re-issue ``caught``, each message once, leaving out the short-video warnings of videos in ``told``
    (the clip protocols and the stream protocol each notice a truncated file: say it once)."""
    seen: set[str] = set()
    for w in caught:
        text = str(w.message)
        if text in seen or _short_videos([w]) & told:
            continue
        seen.add(text)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def write_report(metrics: Mapping[str, Any], out_dir: PathLike) -> list[Path]:
    """Write ``metrics.json`` and ``confusion_<result>.png`` for every result; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "metrics.json"
    json_path.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    written = [json_path]
    for result, values in metrics["results"].items():
        title = f"{metrics['model']}: {result} (top-1 {100 * values['top1']:.1f}%)"
        png = out / f"confusion_{result}.png"
        written.append(plot_confusion_matrix(values["confusion_matrix"], metrics["classes"], png, title))
    return written


def summary_lines(metrics: Mapping[str, Any]) -> list[str]:
    """A small table of the results, accuracies in percent."""
    skipped = [f"{metrics[key]} {what}" for key, what in (("missing_videos", "missing"),
                                                          ("undecodable_videos", "undecodable"),
                                                          ("outside_classes_videos", "of other classes"))
               if metrics.get(key)]
    lines = [f"{metrics['model']}: {metrics['num_videos']} videos, {len(metrics['classes'])} classes"
             + (f" ({', '.join(skipped)} skipped)" if skipped else "")]
    top = min(5, len(metrics["classes"]))  # "top5" is top-min(5, classes)
    lines.append(f"{'result':12s} {'top-1 %':>8s} {f'top-{top} %':>8s}  protocol")
    for result, values in metrics["results"].items():
        if "scored_step" in values:
            protocol = (f"Co3D: 1 clip of {values['frames']} frames, padded warm-up, output of step "
                        f"{values['scored_step']}, pool window {values['pool_window']}")
        elif "clips" in values:
            protocol = f"{values['clips']} clip(s) x {values['crops']} crop(s)"
        else:
            protocol = (f"continual, every {values['sampling_rate']} frame(s), pool window "
                        f"{values['pool_window']}, {values['padded_videos']} padded")
        if values.get("undecodable_videos"):
            protocol += f"; {values['num_videos']} videos ({values['undecodable_videos']} failed part-way)"
        lines.append(f"{result:12s} {100 * values['top1']:8.2f} {100 * values['top5']:8.2f}  {protocol}")
    return lines
