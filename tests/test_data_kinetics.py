import shutil
import warnings

import numpy as np
import pytest
import torch

from cozoo.data import kinetics
from cozoo.data.kinetics import (
    AnnotationError,
    CorruptVideoWarning,
    KineticsDataset,
    MissingVideoWarning,
    VideoRecord,
    build_label_map,
    load_label_map,
    read_annotations,
    resolve_video_paths,
    save_label_map,
    save_subset,
    select_subset,
    write_annotations,
)
from cozoo.data.samplers import RandomClipSampler, UniformClipSampler
from cozoo.data.synthetic import generate_synthetic_dataset
from cozoo.data.transforms import eval_transform
from cozoo.data.video import probe_video, read_frames, write_video

CLASSES = ("moving_left", "moving_right", "growing")
MEAN, STD = (0.45,) * 3, (0.225,) * 3


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return generate_synthetic_dataset(tmp_path_factory.mktemp("kinetics"), CLASSES, videos_per_class=3,
                                      val_videos_per_class=1, frames=16, size=32, seed=1)


@pytest.fixture
def copy(synthetic, tmp_path):
    """A private copy of the synthetic dataset that a test may damage."""
    shutil.copytree(synthetic.root, tmp_path / "data")
    return tmp_path / "data"


def _records(n_per_class: int = 4) -> list[VideoRecord]:
    return [VideoRecord(label, f"{label[:3]}{i:08d}", 10 * i, 10 * i + 10, "train")
            for label in ("b", "a", "c", "d") for i in range(n_per_class)]


def test_wrong_columns_error_names_them(tmp_path):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("label,ytid,start,end\nabseiling,abc,0,10\n")
    with pytest.raises(AnnotationError) as info:
        read_annotations(csv_path)
    message = str(info.value)
    for column in ("youtube_id", "time_start", "time_end", "split"):
        assert column in message
    assert "bad.csv" in message and "ytid" in message  # names the file and what it found
    csv_path.write_text("")
    with pytest.raises(AnnotationError, match="missing required column"):
        read_annotations(csv_path)


def test_bad_rows_name_the_line(tmp_path):
    csv_path = tmp_path / "a.csv"
    csv_path.write_text("label,youtube_id,time_start,time_end,split\nx,abc,0,10,train\nx,abd,zero,10,train\n")
    with pytest.raises(AnnotationError, match=r"a\.csv:3: column 'time_start'"):
        read_annotations(csv_path)
    csv_path.write_text("label,youtube_id,time_start,time_end,split\n,abc,0,10,train\n")
    with pytest.raises(AnnotationError, match="empty value in column"):
        read_annotations(csv_path)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_annotations(tmp_path / "nope.csv")


def test_csv_round_trip_extra_columns_and_split_filter(tmp_path):
    csv_path = tmp_path / "k.csv"
    csv_path.write_text("label,youtube_id,time_start,time_end,split,is_cc\n"
                        "air drumming,--6bJUbfpnQ,17,27,train,0\nabseiling,-3B32lodo2M,59,69,val,0\n")
    records = read_annotations(csv_path)
    assert records[0] == VideoRecord("air drumming", "--6bJUbfpnQ", 17, 27, "train")
    assert records[0].filename == "--6bJUbfpnQ_000017_000027.mp4"
    assert read_annotations(csv_path, split="val") == records[1:]
    assert read_annotations(write_annotations(tmp_path / "out.csv", records)) == records
    spreadsheet = tmp_path / "excel.csv"  # "CSV UTF-8" from a spreadsheet starts with a byte-order mark
    spreadsheet.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    assert read_annotations(spreadsheet) == records
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("label,youtube_id,time_start,time_end,split\ncaf\u00e9,x,0,10,train\n".encode("latin-1"))
    with pytest.raises(AnnotationError, match=r"latin1.csv: not UTF-8 text .*save the CSV as UTF-8"):
        read_annotations(latin1)


def test_path_resolution_nested_flat_and_other_spellings(tmp_path):
    a, b, c, d = (VideoRecord("air drumming", f"id{i}", 0, 10, "train") for i in range(4))
    (tmp_path / "train" / "air drumming").mkdir(parents=True)
    (tmp_path / "train" / "air drumming" / a.filename).touch()
    (tmp_path / b.filename).touch()
    (tmp_path / "elsewhere" / "air_drumming").mkdir(parents=True)
    (tmp_path / "elsewhere" / "air_drumming" / f"{c.stem}.mkv").touch()
    found, missing = resolve_video_paths([a, b, c, d], tmp_path)
    assert [(r, p.relative_to(tmp_path).as_posix()) for r, p in found] == [
        (a, f"train/air drumming/{a.filename}"), (b, b.filename), (c, f"elsewhere/air_drumming/{c.stem}.mkv")]
    assert missing == [d]
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        resolve_video_paths([a], tmp_path / "no_such_dir")


def test_subsets_by_class_file_first_n_and_per_class(tmp_path):
    records = _records()
    class_file = tmp_path / "classes.txt"
    class_file.write_text("# my classes\nd\n\nb\n")
    assert {r.label for r in select_subset(records, class_file=class_file)} == {"b", "d"}
    assert {r.label for r in select_subset(records, num_classes=2)} == {"a", "b"}  # sorted order
    two_each = select_subset(records, classes=["a", "c"], per_class=2, seed=3)
    assert sorted(r.label for r in two_each) == ["a", "a", "c", "c"]
    assert two_each == [r for r in records if r in two_each]  # original order kept
    assert two_each == select_subset(records, classes=["a", "c"], per_class=2, seed=3)  # deterministic
    assert len(select_subset(records, per_class=10)) == len(records)
    with pytest.raises(AnnotationError, match="'zz'"):
        select_subset(records, classes=["a", "zz"])
    with pytest.raises(ValueError, match="only one"):
        select_subset(records, classes=["a"], num_classes=1)
    with pytest.raises(ValueError, match="num_classes"):
        select_subset(records, num_classes=9)


def test_label_map_round_trip_and_subset_saved_with_run(tmp_path):
    records = select_subset(_records(), num_classes=3, per_class=2)
    label_map = build_label_map([r.label for r in records])
    assert label_map == {"a": 0, "b": 1, "c": 2}
    csv_path, map_path = save_subset(tmp_path / "run", records, label_map)
    assert load_label_map(map_path) == label_map
    assert read_annotations(csv_path) == records
    custom = {"zebra": 0, "apple": 1}
    assert load_label_map(save_label_map(tmp_path / "m.json", custom)) == custom  # order is by index
    with pytest.raises(AnnotationError, match="indices"):
        save_label_map(tmp_path / "x.json", {"a": 0, "b": 2})
    (tmp_path / "bad.json").write_text('{"labels": 1}')
    with pytest.raises(AnnotationError, match="classes"):
        load_label_map(tmp_path / "bad.json")
    (tmp_path / "twice.json").write_text('{"classes": ["a", "b", "a"]}')
    with pytest.raises(AnnotationError, match=r"twice.json: duplicate class names \['a'\]"):
        load_label_map(tmp_path / "twice.json")
    (tmp_path / "binary.json").write_bytes(b"\xca\xfe\xba\xbe")
    with pytest.raises(AnnotationError, match=r"binary.json: not a JSON label map \('utf-8' codec"):
        load_label_map(tmp_path / "binary.json")


def test_dataset_items_and_labels(synthetic):
    records = read_annotations(synthetic.train_csv)
    dataset = KineticsDataset(records, synthetic.video_root, RandomClipSampler(8, 2))
    assert len(dataset) == 9 and dataset.classes == sorted(CLASSES)
    torch.manual_seed(0)
    clip, label = dataset[4]
    assert clip.shape == (3, 8, 32, 32) and clip.dtype == torch.float32 and 0 <= clip.min() <= clip.max() <= 1
    assert label == dataset.label_map[records[4].label]
    with pytest.raises(AnnotationError, match="growing"):
        KineticsDataset(records, synthetic.video_root, RandomClipSampler(8, 2), label_map={"moving_left": 0,
                                                                                          "moving_right": 1})


def test_views_for_multi_clip_three_crop_testing(synthetic, monkeypatch):
    records = read_annotations(synthetic.val_csv)
    transform = eval_transform(crop=32, mean=MEAN, std=STD, num_crops=3)
    dataset = KineticsDataset(records, synthetic.video_root, UniformClipSampler(4, 2, 2), transform,
                              return_video_index=True)
    assert len(dataset) == 3 * 2 * 3
    assert dataset.view(7) == (1, 0, 1)
    clip, label, video = dataset[7]
    assert clip.shape == (3, 4, 32, 32) and video == 1 and label == dataset.label_map[records[1].label]
    with pytest.raises(IndexError):
        dataset.view(18)
    # Every view of a video comes from one decoding pass, equal to decoding its clip on its own.
    calls = []
    original = kinetics.read_frames
    monkeypatch.setattr(kinetics, "read_frames", lambda *a: calls.append(a) or original(*a))
    views = [dataset[i] for i in range(len(dataset))]
    assert len(calls) == 3
    path = dataset.videos[1][1]
    for clip_index in range(2):
        alone = transform(read_frames(path, dataset.sampler(probe_video(path).num_frames, clip_index)), 1)
        assert torch.equal(views[(1 * 2 + clip_index) * 3 + 1][0], alone)


def test_missing_videos_one_summary_warning(copy):
    records = read_annotations(copy / "train.csv")
    for record in records[:2]:
        (copy / "videos" / "train" / record.label / record.filename).unlink()
    with pytest.warns(MissingVideoWarning, match="2 of 9 annotated videos not found") as caught:
        dataset = KineticsDataset(records, copy / "videos", RandomClipSampler(4, 1))
    assert len([w for w in caught if w.category is MissingVideoWarning]) == 1
    assert len(dataset) == 7 and dataset.missing == records[:2]


def _corrupt(copy, record: VideoRecord, how: str) -> str:
    path = copy / "videos" / "train" / record.label / record.filename
    data = path.read_bytes()
    path.write_bytes(np.random.default_rng(0).bytes(len(data)) if how == "random" else data[: len(data) // 2])
    return str(path)


def test_probe_drops_corrupt_videos_with_one_warning_each(copy):
    records = read_annotations(copy / "train.csv")
    bad = [_corrupt(copy, records[1], "random"), _corrupt(copy, records[5], "truncated")]
    with pytest.warns(CorruptVideoWarning) as caught:
        dataset = KineticsDataset(records, copy / "videos", UniformClipSampler(8, 2), probe=True)
    messages = [str(w.message) for w in caught if w.category is CorruptVideoWarning]
    assert len(messages) == 2 and all(path in m for path, m in zip(bad, messages, strict=True))
    assert dataset.corrupt == bad and len(dataset) == 7
    labels = [dataset[i][1] for i in range(len(dataset))]  # every remaining item loads
    assert labels == [dataset.label_map[r.label] for i, r in enumerate(records) if i not in (1, 5)]


def test_corrupt_video_found_while_loading_is_reported_once_and_replaced(copy):
    records = read_annotations(copy / "train.csv")
    bad = _corrupt(copy, records[2], "random")
    dataset = KineticsDataset(records, copy / "videos", UniformClipSampler(4, 2), return_video_index=True)
    with pytest.warns(CorruptVideoWarning, match=bad):
        clip, label, video = dataset[2]
    # the next video's clip stands in, marked -1 so per-video aggregation leaves it out
    assert video == -1 and label == dataset.label_map[records[3].label] and clip.shape == (3, 4, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning for the same file
        assert dataset[2][2] == -1
    assert dataset[3][2] == 3
    training = KineticsDataset(records, copy / "videos", RandomClipSampler(4, 2))
    torch.manual_seed(0)
    with pytest.warns(CorruptVideoWarning):
        assert training[2][0].shape == (3, 4, 32, 32)


def test_target_fps_samples_clips_by_time(tmp_path):
    """A 10 fps ramp (frame i has level 20 * i) on a 5 fps timeline: 6 instants, every other frame."""
    levels = np.arange(12, dtype=np.uint8) * 20
    write_video(tmp_path / "videos" / "ramp_000000_000001.mp4",
                np.broadcast_to(levels[:, None, None, None], (12, 16, 16, 3)).copy(), fps=10)
    records = [VideoRecord("a", "ramp", 0, 1, "val")]

    def levels_of(dataset):
        clip = dataset[0][0]  # (3, T, H, W) in [0, 1]
        return [round(float(frame.mean()) * 255 / 20) for frame in clip.unbind(1)]

    by_index = KineticsDataset(records, tmp_path / "videos", UniformClipSampler(3, 1))
    by_time = KineticsDataset(records, tmp_path / "videos", UniformClipSampler(3, 1), target_fps=5.0)
    assert levels_of(by_index) == [4, 5, 6]  # centre clip of 12 frames
    assert levels_of(by_time) == [2, 4, 6]  # centre clip of the 6-instant timeline: instants 1, 2, 3
    with pytest.raises(ValueError, match="target_fps must be positive"):
        KineticsDataset(records, tmp_path / "videos", UniformClipSampler(3, 1), target_fps=0.0)
