import math

import numpy as np
import pytest
import torch

from cozoo.data.kinetics import read_annotations, read_class_list
from cozoo.data.synthetic import (
    SYNTHETIC_CLASSES,
    flipped_class,
    generate_synthetic_dataset,
    render_clip,
    reversed_class,
    write_synthetic_stream,
    write_synthetic_video,
)
from cozoo.data.video import probe_video, read_frames

FRAMES, SIZE = 16, 32


def _shape_mask(video: np.ndarray) -> np.ndarray:
    """(T, H, W) mask of the moving shape: pixels far from the video's background (median) colour."""
    background = np.median(video.reshape(-1, 3), axis=0)
    return np.abs(video.astype(np.float64) - background).mean(-1) > 40


def _centroids(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0 : mask.shape[1], 0 : mask.shape[2]]
    area = mask.sum((1, 2))
    return (mask * ys).sum((1, 2)) / area, (mask * xs).sum((1, 2)) / area


def _orientation(mask: np.ndarray) -> np.ndarray:
    """Principal axis angle of each frame's mask (mod pi), in image coordinates (y down)."""
    ys, xs = np.mgrid[0 : mask.shape[1], 0 : mask.shape[2]]
    cy, cx = _centroids(mask)
    dy, dx = ys[None] - cy[:, None, None], xs[None] - cx[:, None, None]
    mu20, mu02, mu11 = ((mask * a * b).sum((1, 2)) for a, b in ((dx, dx), (dy, dy), (dx, dy)))
    return 0.5 * np.arctan2(2 * mu11, mu20 - mu02)


@pytest.mark.parametrize("label", SYNTHETIC_CLASSES)
def test_reversed_class_is_exact_time_reversal(label):
    forward = render_clip(label, FRAMES, SIZE, seed=11)
    backward = render_clip(reversed_class(label), FRAMES, SIZE, seed=11)
    assert reversed_class(reversed_class(label)) == label
    assert np.array_equal(forward[::-1], backward)
    assert not np.array_equal(forward, backward)  # a pair really differs
    assert forward.shape == (FRAMES, SIZE, SIZE, 3) and forward.dtype == np.uint8


def test_flipped_class_is_what_a_horizontal_flip_shows():
    swapped = {c: flipped_class(c) for c in SYNTHETIC_CLASSES if flipped_class(c) != c}
    assert swapped == {"moving_right": "moving_left", "moving_left": "moving_right",
                       "rotating_cw": "rotating_ccw", "rotating_ccw": "rotating_cw"}
    _, cx = _centroids(_shape_mask(render_clip("moving_right", FRAMES, SIZE, seed=3)[:, :, ::-1]))
    assert cx[-1] < cx[0]  # a flipped rightward motion moves left

    def turning(video: np.ndarray) -> float:
        return float(np.sign(np.diff(np.unwrap(2 * _orientation(_shape_mask(video)))).mean()))

    flipped_cw = render_clip("rotating_cw", FRAMES, SIZE, seed=3)[:, :, ::-1]
    assert turning(flipped_cw) == turning(render_clip("rotating_ccw", FRAMES, SIZE, seed=3)) != 0


@pytest.mark.parametrize("seed", range(4))
def test_motion_semantics(seed):
    cy, cx = _centroids(_shape_mask(render_clip("moving_right", FRAMES, SIZE, seed)))
    assert cx[-1] - cx[0] > 0.2 * SIZE and np.all(np.diff(cx) > -0.5) and np.ptp(cy) < 1.5
    cy, cx = _centroids(_shape_mask(render_clip("moving_up", FRAMES, SIZE, seed)))
    assert cy[0] - cy[-1] > 0.2 * SIZE and np.ptp(cx) < 1.5
    area = _shape_mask(render_clip("growing", FRAMES, SIZE, seed)).sum((1, 2))
    assert area[-1] > 4 * area[0] and np.all(np.diff(area) >= -2)
    angle = _orientation(_shape_mask(render_clip("rotating_cw", FRAMES, SIZE, seed)))
    steps = (np.diff(angle) + math.pi / 2) % math.pi - math.pi / 2  # unwrap mod pi
    assert steps.sum() > math.pi / 3 and (steps > 0).mean() > 0.8  # clockwise on screen


def test_render_is_deterministic_and_varies_with_seed():
    assert np.array_equal(render_clip("growing", 8, SIZE, 5), render_clip("growing", 8, SIZE, 5))
    assert not np.array_equal(render_clip("growing", 8, SIZE, 5), render_clip("growing", 8, SIZE, 6))


def test_written_video_decodes_close_to_render(tmp_path):
    path = write_synthetic_video(tmp_path / "v.mp4", "rotating_ccw", FRAMES, SIZE, seed=2, fps=15)
    decoded = read_frames(path).numpy().astype(np.float64)
    rendered = render_clip("rotating_ccw", FRAMES, SIZE, seed=2).astype(np.float64)
    assert decoded.shape == rendered.shape

    def pooled(video: np.ndarray) -> np.ndarray:  # 4x4 block means: compares content, not pixel noise
        return video.reshape(FRAMES, SIZE // 4, 4, SIZE // 4, 4, 3).mean((2, 4))

    assert np.abs(pooled(decoded) - pooled(rendered)).mean() < 4.0  # measured ~1.8: lossy but intact


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_dataset_layout_csv_and_decodable_videos(tmp_path, layout):
    classes = ("moving_left", "moving_right", "growing")
    paths = generate_synthetic_dataset(tmp_path, classes, videos_per_class=2, val_videos_per_class=1,
                                       frames=FRAMES, size=(SIZE, 48), fps=8, layout=layout)
    train, val = read_annotations(paths.train_csv), read_annotations(paths.val_csv)
    assert [r.label for r in train] == [c for c in classes for _ in range(2)]
    assert {r.split for r in train} == {"train"} and len(val) == 3 and {r.split for r in val} == {"val"}
    assert len({r.youtube_id for r in train + val}) == 9 and all(len(r.youtube_id) == 11 for r in train)
    assert (train[0].time_start, train[0].time_end) == (0, 2)
    assert read_class_list(paths.class_file) == list(classes)
    for record in train + val:
        if layout == "nested":
            path = paths.video_root / record.split / record.label / record.filename
        else:
            path = paths.video_root / record.filename
        info = probe_video(path)
        assert (info.num_frames, info.height, info.width, info.fps) == (FRAMES, SIZE, 48, 8.0)
    assert len(list(paths.video_root.rglob("*.mp4"))) == 9


def test_dataset_is_deterministic(tmp_path):
    a = generate_synthetic_dataset(tmp_path / "a", ("growing",), 1, 0, frames=8, size=SIZE, seed=4)
    b = generate_synthetic_dataset(tmp_path / "b", ("shrinking", "growing"), 2, 0, frames=8, size=SIZE,
                                   seed=4)
    name = read_annotations(a.train_csv)[0].filename
    first = read_frames(a.video_root / "train" / "growing" / name)
    assert torch.equal(first, read_frames(b.video_root / "train" / "growing" / name))


def test_stream_labels_per_frame(tmp_path):
    path, labels = write_synthetic_stream(tmp_path / "s.mp4", [("moving_left", 6), ("growing", 10)], SIZE)
    assert labels == ["moving_left"] * 6 + ["growing"] * 10
    assert probe_video(path).num_frames == 16


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic class 'jumping'"):
        render_clip("jumping")
    with pytest.raises(ValueError, match="even"):
        render_clip("growing", size=33)
    with pytest.raises(ValueError, match="layout"):
        generate_synthetic_dataset(tmp_path, layout="deep")
