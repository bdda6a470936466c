"""Streaming inference: per-frame transform, predictions vs clip mode, padding, plots, ``cozoo stream``."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from helpers import faststart_video

import cozoo
from cozoo.cli import main
from cozoo.commands.choices import WARMUP_MODES
from cozoo.continual import base as continual_base
from cozoo.continual import to_continual
from cozoo.data import eval_transform, read_frames, train_transform, write_synthetic_stream, write_video
from cozoo.data.kinetics import CorruptVideoWarning, save_label_map
from cozoo.data.video import VideoDecodeError
from cozoo.inference.plots import plot_probabilities
from cozoo.inference.video import (
    FrameTransform,
    VideoStreamer,
    frame_transform,
    stream_video,
    stream_video_to_end,
)
from cozoo.registry import get_config

CROP = 32
CLASSES = ["moving_left", "moving_right", "growing"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """20 frames of 48x64: two motions of 10 frames each."""
    folder = tmp_path_factory.mktemp("stream")
    segments = [("moving_right", 10), ("growing", 10)]
    return write_synthetic_stream(folder / "motion.mp4", segments, size=(48, 64))


def _tiny_late_fusion(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = cozoo.create_model("late_fusion", num_classes=len(CLASSES), widths=(4, 8))
    for module in model.modules():  # non-trivial batch-norm statistics
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize(("name", "crop"), [("x3d_s", None), ("late_fusion", None), ("x3d_xs", 40)])
def test_frame_transform_equals_clip_transform(
    video: tuple[Path, list[str]], name: str, crop: int | None
) -> None:
    """Equal up to float rounding (downscaling vectorises differently for 1 and T frames: ~6e-7)."""
    frames = read_frames(video[0])  # (T, 48, 64, 3): resize up (182, 112) and down (40)
    config = get_config(name)
    clip = eval_transform(config, crop=crop)(frames)
    per_frame = frame_transform(config, crop)
    size = crop or config.test_crop
    assert clip.shape == (3, len(frames), size, size)
    for t in (0, 7, len(frames) - 1):
        x = per_frame(frames[t])
        assert x.shape == (1, 3, size, size)
        torch.testing.assert_close(x[0], clip[:, t], rtol=0, atol=1e-6)


def test_frame_transform_rejects_bad_input() -> None:
    config = get_config("late_fusion")
    with pytest.raises(ValueError, match="single centre crop"):
        FrameTransform(train_transform(config))
    with pytest.raises(ValueError, match="single centre crop"):
        FrameTransform(eval_transform(config, num_crops=3))
    with pytest.raises(ValueError, match=r"uint8 frame of shape \(H, W, 3\)"):
        frame_transform(config)(torch.zeros(3, 64, 64, dtype=torch.uint8))


def test_stream_equals_regular_model_on_the_last_window(video: tuple[Path, list[str]]) -> None:
    """Late fusion streamed every 2nd frame: each prediction is the regular model on the last 8 fed frames."""
    regular = _tiny_late_fusion()
    continual = to_continual(regular, pool_window=8).eval()
    transform = frame_transform(get_config("late_fusion"), CROP)
    streamer = VideoStreamer(continual, transform, sampling_rate=2)
    predictions = list(stream_video(streamer, video[0]))
    assert (streamer.frames_read, streamer.steps) == (20, 10)
    assert [p.frame_index for p in predictions] == [14, 16, 18]  # fed frames 0, 2, ..., 18; 8 to warm up
    assert [p.step for p in predictions] == [7, 8, 9]
    # each averages the last 8 fed frames: its source clip, centred 7 video frames back
    stamps = [(p.first_frame, p.clip_first, p.clip_last, p.centre_frame) for p in predictions]
    assert stamps == [(0, 0, 14, 7.0), (2, 2, 16, 9.0), (4, 4, 18, 11.0)]
    fed = eval_transform(get_config("late_fusion"), crop=CROP)(read_frames(video[0]))[:, ::2]
    with torch.no_grad():
        for p in predictions:
            window = fed[:, p.step - 7 : p.step + 1].unsqueeze(0)
            torch.testing.assert_close(p.logits, regular(window)[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(predictions[0].probs.sum(), torch.tensor(1.0))


def test_short_video_pads_with_its_last_frame(video: tuple[Path, list[str]]) -> None:
    regular = _tiny_late_fusion()
    continual = to_continual(regular, pool_window=16).eval()
    streamer = VideoStreamer(continual, frame_transform(get_config("late_fusion"), CROP), sampling_rate=2)
    assert list(stream_video(streamer, video[0])) == []  # 10 steps < 16 needed
    prediction = streamer.pad_until_output()
    assert prediction is not None and streamer.padded == 6 and prediction.step == 15
    fed = eval_transform(get_config("late_fusion"), crop=CROP)(read_frames(video[0]))[:, ::2]
    padded = torch.cat([fed, fed[:, -1:].expand(-1, 6, -1, -1)], dim=1).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(prediction.logits, regular(padded)[0], rtol=1e-4, atol=1e-5)
    assert streamer.pad_until_output() is None  # already warm
    # tagged with the last real frame; its source clip starts at video frame (step - delay) * rate = 0 and
    # stops at the last real frame (the padded steps repeat it)
    assert (prediction.frame_index, prediction.clip_first, prediction.clip_last) == (19, 0, 19)
    with pytest.raises(ValueError, match="reset"):
        next(streamer.feed(read_frames(video[0])[:2]))
    padded_run = stream_video_to_end(streamer, video[0])  # the same, in one call
    assert len(padded_run) == 1 and streamer.padded == 6
    torch.testing.assert_close(padded_run[0].logits, prediction.logits)


def test_stream_video_errors(tmp_path: Path) -> None:
    streamer = VideoStreamer(to_continual(_tiny_late_fusion(), pool_window=8).eval(),
                             frame_transform(get_config("late_fusion"), CROP))
    with pytest.raises(FileNotFoundError, match="not found"):
        list(stream_video(streamer, tmp_path / "absent.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x01 not a video" * 50)
    with pytest.raises(VideoDecodeError, match="cannot decode video"):
        list(stream_video(streamer, bad))
    with pytest.raises(ValueError, match="sampling_rate"):
        VideoStreamer(streamer.model, streamer.transform, sampling_rate=0)
    whole = faststart_video(tmp_path / "whole.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.warns(CorruptVideoWarning, match="decoding ended after 3 of the 12 frames the file declares"):
        list(stream_video(streamer, cut))


def test_plot_probabilities_writes_a_png(video: tuple[Path, list[str]], tmp_path: Path) -> None:
    streamer = VideoStreamer(to_continual(_tiny_late_fusion(), pool_window=4).eval(),
                             frame_transform(get_config("late_fusion"), CROP))
    predictions = list(stream_video(streamer, video[0]))
    path = plot_probabilities(predictions, CLASSES, tmp_path / "plots" / "p.png", top=2, title="test")
    image = matplotlib.image.imread(path)
    assert image.shape == (450, 900, 4) and image.std() > 0.01  # drawn, not blank
    with pytest.raises(ValueError, match="class names"):
        plot_probabilities(predictions, CLASSES[:2], tmp_path / "q.png")
    with pytest.raises(ValueError, match="no predictions"):
        plot_probabilities([], CLASSES, tmp_path / "q.png")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fine-tuning style checkpoint of a default-width late fusion model with 3 named classes."""
    torch.manual_seed(1)
    model = cozoo.create_model("late_fusion", num_classes=3)
    path = tmp_path_factory.mktemp("ckpt") / "late_fusion.pt"
    torch.save({"model": model.state_dict(), "label_map": {c: i for i, c in enumerate(CLASSES)},
                "config": {"model": "late_fusion"}}, path)
    return path


def test_cli_stream_prints_per_frame_predictions_and_plots(
    video: tuple[Path, list[str]], checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "probs.png"
    code = main(["stream", str(video[0]), "--model", "colate_fusion", "--checkpoint", str(checkpoint),
                 "--crop", str(CROP), "--sampling-rate", "1", "--top-k", "2", "--plot", str(plot)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    frame_lines = [line for line in out if line.startswith("frame ")]
    assert [int(line.split()[1]) for line in frame_lines] == list(range(7, 20))
    stamps = [re.search(r"\(clip (\d+)-(\d+), centre ([\d.]+)\)", line).groups() for line in frame_lines]
    # each averages the last 8 frames: the source clip t-7..t, centred on t-3.5
    assert [(int(a), int(b), float(c)) for a, b, c in stamps] == [(t - 7, t, t - 3.5) for t in range(7, 20)]
    assert "the source clip of 8 model frames from video frame f - 7 (centre about f - 3.5)" in out[0]
    for line in frame_lines:
        shown = line.split(": ", 1)[1].split(", ")
        assert len(shown) == 2 and all(s.rsplit(" ", 1)[0] in CLASSES for s in shown)
    assert "20 frames decoded, 20 model steps, 13 predictions" in out[-2] and "frames/s" in out[-2]
    assert out[-1] == f"wrote {plot}"
    assert matplotlib.image.imread(plot).shape == (450, 900, 4)
    assert "BatchNorm folded into the convolutions" in out[0]
    code = main(["stream", str(video[0]), "--model", "colate_fusion", "--checkpoint", str(checkpoint),
                 "--crop", str(CROP), "--sampling-rate", "1", "--top-k", "2", "--no-fuse-bn"])
    unfused = capsys.readouterr().out.splitlines()
    assert code == 0 and "BatchNorm" not in unfused[0]
    assert [line for line in unfused if line.startswith("frame ")] == frame_lines  # same to 3 decimals


def test_cli_stream_label_map_and_sampling_rate(
    video: tuple[Path, list[str]], checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    label_map = save_label_map(tmp_path / "labels.json", {"a": 0, "b": 1, "c": 2})
    code = main(["stream", str(video[0]), "--model", "late_fusion", "--checkpoint", str(checkpoint),
                 "--label-map", str(label_map), "--crop", str(CROP), "--sampling-rate", "2", "--top-k", "9"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    frame_lines = [line for line in out if line.startswith("frame ")]
    assert [int(line.split()[1]) for line in frame_lines] == [14, 16, 18]
    assert sorted(s.split()[0] for s in frame_lines[0].split(": ")[1].split(", ")) == ["a", "b", "c"]


def test_cli_stream_padded_warmup_predicts_from_delay(
    video: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """CoSlow-R50 needs 26 frames in a valid warm-up (none in this 20-frame video), 17 in a padded one:
    predictions at frames 16-19, stamped with source clips that start at frame t - 16."""
    common = ["stream", str(video[0]), "--model", "coslow_r50", "--crop", str(CROP), "--sampling-rate", "1",
              "--by-index", "--top-k", "1", "--quiet"]
    assert main(common) == 1
    assert "the first prediction needs 26 frames" in capsys.readouterr().err
    assert main([*common, "--warmup", "padded"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "first prediction after 17 model steps (padded warm-up" in out[0]
    frame_lines = [line for line in out if line.startswith("frame ")]
    assert [int(line.split()[1]) for line in frame_lines] == [16, 17, 18, 19]
    stamps = [re.search(r"\(clip (\d+)-(\d+),", line).groups() for line in frame_lines]
    assert [int(first) for first, _ in stamps] == [0, 1, 2, 3]
    assert "20 frames decoded, 20 model steps, 4 predictions" in out[-1]
    with pytest.raises(SystemExit):
        main([*common, "--warmup", "zeros"])
    assert "argument --warmup: invalid choice: 'zeros'" in capsys.readouterr().err
    assert WARMUP_MODES == continual_base.WARMUP_MODES  # the torch-free parser's copy


def test_cli_stream_errors(
    video: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    common = ["--model", "colate_fusion", "--crop", str(CROP), "--sampling-rate", "1"]
    assert main(["stream", str(tmp_path / "missing.mp4"), *common]) == 2
    assert "cozoo stream: error: video file not found" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(video[0].read_bytes()[:300])
    assert main(["stream", str(corrupt), *common]) == 2
    assert "cannot decode video" in capsys.readouterr().err
    assert main(["stream", str(video[0]), *common, "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err
    monkeypatch.setenv("COZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COZOO_OFFLINE", "1")
    assert main(["stream", str(video[0]), "--model", "cox3d_xs", "--pretrained"]) == 2
    err = capsys.readouterr().err
    assert "offline mode is on" in err and "X3D_XS.pyth" in err
    # Too short for the warm-up (every 4th frame: 5 steps, 8 needed): a message, exit code 1.
    assert main(["stream", str(video[0]), "--model", "colate_fusion", "--crop", str(CROP),
                 "--sampling-rate", "4"]) == 1
    assert "no prediction: the video ended after 20 frames (5 model steps); the first prediction needs 29 " \
        "frames (8 steps). Pass --pad" in capsys.readouterr().err
    assert main(["stream", str(video[0]), "--model", "colate_fusion", "--crop", str(CROP),
                 "--sampling-rate", "4", "--pad"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "shorter videos are padded with their last frame" in out[0]
    padded = [line for line in out if line.startswith("frame ")]
    assert len(padded) == 1 and padded[0].endswith("[after 3 repeats of the last frame]")
    assert main(["stream", str(video[0]), *common, "--target-fps", "7.5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "frames 0.133 s apart (a 7.5 fps timeline)" in out[0]
    assert "from video frame f - 14 (centre about f - 7)" in out[0]  # 8 steps of 2 video frames
    assert main(["stream", str(video[0]), *common, "--plot", str(tmp_path)]) == 2
    assert "is a directory; give a PNG file name" in capsys.readouterr().err
    whole = faststart_video(tmp_path / "whole.mp4", frames=40).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    assert main(["stream", str(tmp_path / "cut.mp4"), *common]) == 0
    assert "cozoo stream: warning: " in capsys.readouterr().err  # one line, not Python's warning format
    assert main(["stream", str(video[0]), *common, "--cuda-graphs"]) == 2
    assert "--cuda-graphs needs a CUDA device (--device cuda), got --device cpu" in capsys.readouterr().err


def test_target_fps_steps_by_time(tmp_path: Path) -> None:
    """A 12-frame 10 fps video on a 5 fps timeline feeds every other frame; on a 20 fps one, each twice."""
    path = write_video(tmp_path / "ten_fps.mp4", np.zeros((12, 32, 32, 3), np.uint8), fps=10)
    continual = to_continual(_tiny_late_fusion(), pool_window=1).eval()
    steps, transform = {}, frame_transform(get_config("late_fusion"), CROP)
    for target in (None, 5.0, 20.0):
        streamer = VideoStreamer(continual, transform, target_fps=target)
        frames = [p.frame_index for p in stream_video(streamer, path)]
        steps[target] = (streamer.steps, frames[:4])
    assert steps == {None: (12, [0, 1, 2, 3]), 5.0: (6, [0, 2, 4, 6]), 20.0: (24, [0, 0, 1, 1])}
    # Stamps are video frames: the 4-step clip spans 6 frames of the 10 fps video on the 5 fps timeline.
    slower = VideoStreamer(to_continual(_tiny_late_fusion(), pool_window=4).eval(), transform, target_fps=5.0)
    centred = [(p.frame_index, p.clip_first, p.centre_frame) for p in stream_video(slower, path)]
    assert centred == [(6, 0, 3.0), (8, 2, 5.0), (10, 4, 7.0)]
    with pytest.raises(ValueError, match="target_fps must be a positive number"):
        VideoStreamer(continual, transform, target_fps=float("inf"))
    with pytest.warns(UserWarning, match="frame rate is unknown"):
        list(VideoStreamer(continual, transform, target_fps=5.0).feed(read_frames(path)[:2]))
