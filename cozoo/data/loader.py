"""Build a Kinetics clip dataset and its DataLoader from a model config or plain arguments."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader

from cozoo.data.kinetics import KineticsDataset, VideoRecord, read_annotations
from cozoo.data.samplers import RandomClipSampler, UniformClipSampler
from cozoo.data.transforms import eval_transform, train_transform
from cozoo.data.video import PathLike

if TYPE_CHECKING:
    from cozoo.models.registry import ModelConfig


def build_dataset(
    annotations: PathLike | Sequence[VideoRecord],
    video_root: PathLike,
    *,
    training: bool,
    config: ModelConfig | None = None,
    frames: int | None = None,
    sampling_rate: int | None = None,
    crop: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    split: str | None = None,
    num_clips: int = 1,
    num_crops: int = 1,
    flip: bool = True,
    short_side: int | tuple[int, int] | None = None,
    resize: tuple[int, int] | None = None,
    label_map: dict[str, int] | None = None,
    probe: bool | None = None,
    return_video_index: bool = False,
    target_fps: float | None = None,
) -> KineticsDataset:
    """A `KineticsDataset` with the model's clip length, sampling rate, crop and normalisation.

    ``annotations`` is a CSV path or already selected records (only rows of ``split``, when given).
    Explicit arguments override the config's fields. Training: one random clip, short side drawn from
    ``short_side`` (a ``(low, high)`` range), random crop and (if ``flip``) horizontal flips. Testing: short
    side ``short_side`` (an int) or every frame resized to ``resize`` (default: as `eval_transform`, the
    config's recipe), ``num_clips`` uniform clips x ``num_crops``
    (1 or 3) crops, and ``probe`` (default: on for testing) drops undecodable videos up front.
    ``target_fps`` (default: the config's) samples by time (see `KineticsDataset`).
    """
    if config is None and (frames is None or sampling_rate is None):
        raise ValueError("pass a ModelConfig or both frames=... and sampling_rate=...")
    frames = int(frames if frames is not None else config.frames)  # type: ignore[union-attr]
    if target_fps is None and config is not None:
        target_fps = config.target_fps
    rate = int(sampling_rate if sampling_rate is not None else config.sampling_rate)  # type: ignore[union-attr]
    if isinstance(annotations, str | os.PathLike):
        records = read_annotations(annotations, split)
    else:
        records = [r for r in annotations if split is None or r.split == split]
    if training:
        if num_clips != 1 or num_crops != 1:
            raise ValueError("training draws one random clip and crop per video (num_clips=num_crops=1)")
        sampler = RandomClipSampler(frames, rate)
        if isinstance(short_side, int):
            short_side = (short_side, short_side)
        transform = train_transform(config, crop=crop, mean=mean, std=std, short_side=short_side, flip=flip)
    else:
        sampler = UniformClipSampler(frames, rate, num_clips)
        if isinstance(short_side, tuple):
            raise ValueError(f"testing uses one short side size, got the range {short_side}")
        transform = eval_transform(config, crop=crop, mean=mean, std=std, short_side=short_side,
                                   num_crops=num_crops, resize=resize)
    return KineticsDataset(
        records,
        video_root,
        sampler,
        transform,
        label_map=label_map,
        probe=(not training) if probe is None else probe,
        return_video_index=return_video_index,
        target_fps=target_fps,
    )


def build_dataloader(
    dataset: KineticsDataset,
    batch_size: int,
    *,
    num_workers: int = 0,
    shuffle: bool | None = None,
    drop_last: bool | None = None,
    seed: int | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """DataLoader over a clip dataset. ``shuffle``/``drop_last`` default to on for training samplers.

    Workers are persistent, so a corrupt video is reported once per worker rather than once per epoch.
    ``seed`` fixes the shuffling order and, with workers, their random streams (clip starts, crops,
    flips); without workers those come from torch's global generator.
    """
    training = isinstance(dataset.sampler, RandomClipSampler)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=training if shuffle is None else shuffle,
        drop_last=training if drop_last is None else drop_last,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        generator=generator,
    )
