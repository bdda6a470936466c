"""Data for fine-tuning: annotations -> class subset and label map -> clip datasets -> resumable loaders.

Reproducibility: the training order of epoch ``e`` is a permutation drawn from ``(seed, e)`` and the random
augmentation of an item (clip start, scale, crop, flip, replacement of a corrupt video) from
``(seed, e, index)``, so neither depends on the number of workers or on where a run was resumed.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cozoo.data import (
    AnnotationError,
    KineticsDataset,
    VideoRecord,
    build_dataset,
    generate_synthetic_dataset,
    read_annotations,
    select_subset,
)
from cozoo.data.kinetics import build_label_map
from cozoo.data.transforms import CropRounding
from cozoo.models.registry import ModelConfig
from cozoo.training.config import DataSection, FinetuneConfig


@dataclass(frozen=True)
class Clips:
    """Geometry and normalisation of the clips a run trains and evaluates on."""

    frames: int
    sampling_rate: int
    train_crop: int
    test_crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    test_short_side: int | None = None  # None: the test crop
    target_fps: float | None = None  # None: clips sampled by frame index
    test_resize: tuple[int, int] | None = None  # every test frame to (height, width); None: short side
    crop_rounding: CropRounding = "floor"  # of the centre crop's offset (the model's recipe)


def clip_settings(data: DataSection, model: ModelConfig) -> Clips:
    """The data section's clip settings, each falling back to the model config's value (the model's test
    short side, or fixed test resize, only while its test crop is kept and no short side is set)."""
    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    test_crop = int(pick(data.test_crop, model.test_crop))
    model_short = model.test_short_side if test_crop == model.test_crop else None
    keeps_resize = test_crop == model.test_crop and data.test_short_side is None
    return Clips(
        frames=int(pick(data.frames, model.frames)),
        sampling_rate=int(pick(data.sampling_rate, model.sampling_rate)),
        train_crop=int(pick(data.train_crop, model.train_crop)),
        test_crop=test_crop,
        mean=tuple(pick(data.mean, model.mean)),
        std=tuple(pick(data.std, model.std)),
        test_short_side=pick(data.test_short_side, model_short),
        target_fps=None if data.by_index else pick(data.target_fps, model.target_fps),
        test_resize=model.test_resize if keeps_resize else None,
        crop_rounding=model.crop_rounding,  # type: ignore[arg-type]
    )


def point_at_synthetic(config: FinetuneConfig) -> Path:
    """Point the data section at the synthetic dataset's files, generated or not (so that a resumed run's
    config can be checked before anything is generated); returns the dataset's folder."""
    data = config.data
    root = Path(data.root or Path(config.output_dir) / "data")
    data.root, data.train_csv, data.val_csv = str(root), str(root / "train.csv"), str(root / "val.csv")
    data.video_root = str(root / "videos")
    return root


def prepare_synthetic(config: FinetuneConfig) -> None:
    """Generate the synthetic dataset (once; kept if the same parameters were used) and point the data
    section at it."""
    synthetic = config.data.synthetic
    assert synthetic is not None
    root = point_at_synthetic(config)
    stamp = root / "synthetic.json"
    params = json.dumps(vars(synthetic), sort_keys=True)
    if not (stamp.is_file() and stamp.read_text(encoding="utf-8") == params):
        paths = generate_synthetic_dataset(
            root, synthetic.classes, synthetic.videos_per_class, synthetic.val_videos_per_class,
            synthetic.frames, synthetic.size, synthetic.fps, synthetic.seed,
        )
        stamp.write_text(params, encoding="utf-8")
        assert paths.train_csv == root / "train.csv"


def select_records(data: DataSection) -> tuple[list[VideoRecord], list[VideoRecord], dict[str, int]]:
    """Training and validation records of the chosen classes, and the label map (sorted class names)."""
    assert data.train_csv and data.val_csv
    train = read_annotations(data.train_csv, data.train_split)
    if not train:
        raise AnnotationError(f"{data.train_csv}: no training rows" + (
            f" with split {data.train_split!r}" if data.train_split else ""))
    train = select_subset(train, classes=data.classes, class_file=data.class_file,
                          num_classes=data.num_classes, per_class=data.per_class, seed=data.subset_seed)
    label_map = build_label_map([r.label for r in train])
    val = [r for r in read_annotations(data.val_csv, data.val_split) if r.label in label_map]
    if not val:
        raise AnnotationError(f"{data.val_csv}: no validation rows for the {len(label_map)} chosen classes")
    absent = sorted(set(label_map) - {r.label for r in val})
    if absent:
        warnings.warn(f"no validation videos for class(es) {absent}", stacklevel=2)
    return train, val, label_map


def build_datasets(
    data: DataSection, model: ModelConfig, clips: Clips, train: list[VideoRecord], val: list[VideoRecord],
    label_map: dict[str, int],
) -> tuple[KineticsDataset, KineticsDataset]:
    """Training clips (random start, scale, crop, optional flip) and validation views (probed up front,
    items carry their video index for per-video accuracy)."""
    assert data.video_root
    # the config carries the clips' timeline: build_dataset reads a None target_fps as "the config's"
    timed = dataclasses.replace(model, target_fps=clips.target_fps)
    common = dict(config=timed, frames=clips.frames, sampling_rate=clips.sampling_rate, mean=clips.mean,
                  std=clips.std, label_map=label_map, target_fps=clips.target_fps)
    short = tuple(data.train_short_side) if data.train_short_side else None
    try:
        split = "training"
        train_set = build_dataset(train, data.video_root, training=True, crop=clips.train_crop,
                                  flip=data.flip_enabled, short_side=short, **common)  # type: ignore[arg-type]
        split = "validation"
        val_set = build_dataset(val, data.video_root, training=False, crop=clips.test_crop,
                                short_side=clips.test_short_side, resize=clips.test_resize,
                                num_clips=data.val_clips,
                                return_video_index=True, **common)  # type: ignore[arg-type]
    except RuntimeError as error:  # e.g. no usable videos: say which set
        raise RuntimeError(f"{split} set: {error}") from None
    untrained = sorted(set(label_map) - {record.label for record, _ in train_set.videos})
    if untrained:
        warnings.warn(f"no training video was found for class(es) {untrained}: their outputs stay untrained",
                      stacklevel=2)
    return train_set, val_set


def derived_seed(*keys: int) -> int:
    """A 63-bit seed mixed from non-negative integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> 1)


class EpochSeeded(Dataset):
    """Item ``(epoch, index)`` is ``dataset[index]`` drawn under a torch seed made of ``(seed, epoch,
    index)``; the caller's random state is left as it was."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only (what the samplers and transforms draw from): torch.manual_seed would
            # also reseed CUDA's, whose state fork_rng(devices=[]) does not restore.
            torch.default_generator.manual_seed(derived_seed(self.seed, epoch, index))
            return self.dataset[index]


class ResumableSampler(Sampler):
    """Yields ``(epoch, index)`` keys of one epoch in a permutation drawn from ``(seed, epoch)``, starting
    at position ``start`` (to resume an epoch part-way). Set both with `set_epoch` before iterating.

    The order is global: it is cut into batches of ``batch_size`` (the recipe's, whatever the number of
    processes; a last partial batch is dropped), and rank ``r`` of ``world_size`` processes takes slice
    ``r`` of each, so the processes together see the same samples at every step as one process does.
    """

    def __init__(self, size: int, seed: int, batch_size: int = 1, rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"the batch size {batch_size} does not split evenly over {world_size} processes")
        self.size, self.seed = size, seed
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        return torch.randperm(self.size, generator=generator).tolist()

    def _mine(self) -> list[int]:
        order = self.order()[self.start:]
        order = order[: len(order) // self.batch_size * self.batch_size]
        share = self.batch_size // self.world_size
        return [index for begin in range(0, len(order), self.batch_size)
                for index in order[begin + self.rank * share: begin + (self.rank + 1) * share]]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, index) for index in self._mine()])

    def __len__(self) -> int:
        return (self.size - self.start) // self.batch_size * (self.batch_size // self.world_size)


def train_loader(dataset: KineticsDataset, data: DataSection, seed: int, pin_memory: bool,
                 rank: int = 0, world_size: int = 1) -> DataLoader:
    """Batches of ``data.batch_size`` clips (the last partial batch is dropped) in resumable order; with
    ``world_size`` processes, this rank's ``batch_size / world_size`` clips of each (`ResumableSampler`)."""
    if len(dataset) < data.batch_size:
        raise ValueError(f"{len(dataset)} training videos are fewer than one batch ({data.batch_size})")
    return DataLoader(
        EpochSeeded(dataset, seed),
        batch_size=data.batch_size // world_size,
        sampler=ResumableSampler(len(dataset), seed, data.batch_size, rank, world_size),
        drop_last=True,
        num_workers=data.num_workers,
        persistent_workers=data.num_workers > 0,
        pin_memory=pin_memory,
        generator=torch.Generator(),  # worker base seeds: never drawn from the global generator
    )


def val_loader(dataset: KineticsDataset, data: DataSection, pin_memory: bool,
               sampler: Sampler | None = None) -> DataLoader:
    """Validation views in order (``sampler``: e.g. this rank's share, `cozoo.distributed.ShardSampler`)."""
    return DataLoader(
        dataset,
        batch_size=data.val_batch_size or data.batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=data.num_workers,
        persistent_workers=data.num_workers > 0,
        pin_memory=pin_memory,
        generator=torch.Generator(),
    )
