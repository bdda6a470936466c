import collections
import shutil

import pytest
import torch

from cozoo.data.kinetics import read_annotations
from cozoo.data.loader import build_dataloader, build_dataset
from cozoo.data.synthetic import generate_synthetic_dataset
from cozoo.registry import ModelConfig

CLASSES = ("moving_left", "moving_right", "rotating_cw", "rotating_ccw")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return generate_synthetic_dataset(tmp_path_factory.mktemp("loader"), CLASSES, videos_per_class=3,
                                      val_videos_per_class=1, frames=16, size=(32, 40), seed=2)


def _config() -> ModelConfig:
    return ModelConfig(name="tiny", family="t", builder=torch.nn.Identity, frames=4, sampling_rate=3,
                       train_crop=24, test_crop=28, num_classes=4)


def test_training_loader_with_two_workers(synthetic):
    dataset = build_dataset(synthetic.train_csv, synthetic.video_root, training=True, config=_config(),
                            flip=False)
    loader = build_dataloader(dataset, batch_size=4, num_workers=2, seed=0)
    batches = list(loader)
    assert len(batches) == 3  # 12 videos, drop_last
    assert all(clips.shape == (4, 3, 4, 24, 24) and clips.dtype == torch.float32 for clips, _ in batches)
    labels = torch.cat([labels for _, labels in batches])
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    mean = torch.cat([clips for clips, _ in batches]).mean()
    assert -2.5 < float(mean) < 2.5  # normalised with the Kinetics mean/std


def test_eval_loader_views_per_video(synthetic):
    dataset = build_dataset(synthetic.val_csv, synthetic.video_root, training=False, frames=8,
                            sampling_rate=2, crop=32, mean=(0.5,) * 3, std=(0.5,) * 3, num_clips=2,
                            num_crops=3, return_video_index=True)
    loader = build_dataloader(dataset, batch_size=5, num_workers=2)
    seen, shapes = collections.Counter(), set()
    for clips, labels, videos in loader:
        shapes.add(tuple(clips.shape[1:]))
        for label, video in zip(labels.tolist(), videos.tolist(), strict=True):
            assert label == dataset.label_map[dataset.videos[video][0].label]
            seen[video] += 1
    assert shapes == {(3, 8, 32, 32)} and seen == {v: 6 for v in range(4)}


def test_loader_survives_corrupt_video(synthetic, tmp_path):
    root = shutil.copytree(synthetic.root, tmp_path / "data")
    record = read_annotations(root / "train.csv")[0]
    (root / "videos" / "train" / record.label / record.filename).write_bytes(b"\x00" * 500)
    dataset = build_dataset(root / "train.csv", root / "videos", training=True, config=_config())
    batches = list(build_dataloader(dataset, batch_size=3, num_workers=2, seed=1))  # must not crash
    assert len(batches) == 4 and all(clips.shape[0] == 3 for clips, _ in batches)


def test_short_side_and_records_input(synthetic):
    records = read_annotations(synthetic.train_csv) + read_annotations(synthetic.val_csv)
    dataset = build_dataset(records, synthetic.video_root, training=False, config=_config(), split="val",
                            short_side=36)
    assert len(dataset) == 4 and dataset.transform.short_side == (36, 36)
    assert dataset[0][0].shape == (3, 4, 28, 28)
    with pytest.raises(ValueError, match="one short side"):
        build_dataset(records, synthetic.video_root, training=False, config=_config(), short_side=(30, 40))


def test_argument_errors(synthetic):
    with pytest.raises(ValueError, match="ModelConfig or both frames"):
        build_dataset(synthetic.train_csv, synthetic.video_root, training=True, frames=4)
    with pytest.raises(ValueError, match="num_clips"):
        build_dataset(synthetic.train_csv, synthetic.video_root, training=True, config=_config(), num_clips=2)
