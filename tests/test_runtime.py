"""cozoo.runtime: numpy preprocessing equals cozoo's FrameTransform; `cozoo export` + the runtime stream a
video to the predictions of `cozoo stream`; the runtime imports and runs with torch unimportable."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import randomise_batchnorm, torch_blocked_env

from cozoo.cli import main
from cozoo.data.synthetic import write_synthetic_stream
from cozoo.data.transforms import eval_transform
from cozoo.evaluation.evaluate import load_model
from cozoo.fuse import fuse_conv_bn
from cozoo.inference.video import VideoStreamer, frame_transform, stream_video
from cozoo.runtime import FramePreprocessor, OnnxVideoStreamer
from cozoo.runtime.preprocess import iter_rgb_frames, resize_bilinear

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("height,width,crop,short", [(48, 64, 32, 32), (64, 48, 32, 40), (37, 91, 16, 21),
                                                     (32, 32, 32, 32), (20, 30, 24, 24)])
def test_numpy_preprocessing_equals_frame_transform(height, width, crop, short):
    frame = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    mean, std = (0.43, 0.45, 0.47), (0.22, 0.225, 0.23)
    transform = frame_transform_for(crop, short, mean, std)
    expected = transform(torch.from_numpy(frame)).numpy()
    got = FramePreprocessor(crop, short, mean, std)(frame)
    assert got.shape == expected.shape == (1, 3, crop, crop) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def frame_transform_for(crop, short, mean, std):
    from cozoo.inference.video import FrameTransform

    return FrameTransform(eval_transform(crop=crop, short_side=short, mean=mean, std=std))


def test_resize_matches_torch_interpolate_up_and_down():
    image = np.random.default_rng(0).random((3, 13, 29), dtype=np.float32)
    for size in ((7, 11), (26, 58), (13, 29), (40, 5)):
        expected = torch.nn.functional.interpolate(torch.from_numpy(image)[None], size=size, mode="bilinear",
                                                   align_corners=False)[0].numpy()
        np.testing.assert_allclose(resize_bilinear(image, *size), expected, rtol=1e-5, atol=1e-6)


def test_preprocessor_refuses_bad_frames():
    transform = FramePreprocessor(16, 16, (0.5,) * 3, (0.2,) * 3)
    with pytest.raises(ValueError, match=r"uint8 RGB frame of shape \(H, W, 3\), got float64 \(16, 16, 3\)"):
        transform(np.zeros((16, 16, 3)))
    with pytest.raises(ValueError, match="crop size 16 is larger than the 15x12 frames"):
        FramePreprocessor(16, 12, (0.5,) * 3, (0.2,) * 3)(np.zeros((20, 16, 3), np.uint8))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``cozoo export`` of colate_fusion (random weights, crop 32) and a 3-segment synthetic video."""
    folder = tmp_path_factory.mktemp("export")
    assert main(["export", "colate_fusion", "--crop", "32", "--sampling-rate", "1", "--format", "onnx",
                 "--out", str(folder), "--quiet"]) == 0
    video, _ = write_synthetic_stream(folder / "video.mp4", [("moving_left", 12), ("growing", 12)],
                                      size=(48, 64))
    return folder, video


def test_cli_export_and_runtime_stream_equal_cozoo_stream(exported):
    folder, video = exported
    metadata = json.loads((folder / "colate_fusion.json").read_text())
    assert metadata["model"] == "colate_fusion" and metadata["weights"]["sha256"] is None
    runtime = OnnxVideoStreamer(folder / "colate_fusion.onnx", threads=1)
    predictions = list(runtime.stream_video(video))
    assert predictions and predictions[0].step == metadata["schedule"]["first_output"]
    assert [p.frame_index for p in predictions] == list(range(7, 24))
    assert all(p.centre_frame == p.frame_index - 3.5 for p in predictions)  # source clip t-7..t


def test_runtime_equals_stream_video_for_the_same_weights(tmp_path):
    loaded = load_model("coi3d_r50")
    checkpoint = tmp_path / "weights.pt"
    torch.manual_seed(1)
    randomise_batchnorm(loaded.model)
    torch.save(loaded.model.state_dict(), checkpoint)
    assert main(["export", "coi3d_r50", "--checkpoint", str(checkpoint), "--crop", "32", "--sampling-rate",
                 "1", "--out", str(tmp_path), "--quiet"]) == 0
    video, _ = write_synthetic_stream(tmp_path / "video.mp4", [("moving_left", 30), ("growing", 30)],
                                      size=(40, 56))
    reference = load_model("coi3d_r50", checkpoint=checkpoint)
    model = fuse_conv_bn(reference.continual())
    streamer = VideoStreamer(model, frame_transform(reference.config, 32), sampling_rate=1,
                             target_fps=reference.config.target_fps)  # the exported metadata's frame rule
    expected = list(stream_video(streamer, video))
    runtime = OnnxVideoStreamer(tmp_path / "coi3d_r50.onnx", threads=1)
    got = list(runtime.stream_video(video))
    assert len(expected) >= 2
    assert [(p.frame_index, p.centre_frame, p.step) for p in got] == \
        [(p.frame_index, p.centre_frame, p.step) for p in expected]
    for g, e in zip(got, expected, strict=True):
        scale = float(e.logits.abs().max())
        np.testing.assert_allclose(g.logits, e.logits.numpy(), rtol=1e-4, atol=1e-4 * scale)
    metadata = json.loads((tmp_path / "coi3d_r50.json").read_text())
    assert metadata["weights"]["source"] == str(checkpoint.resolve())
    assert len(metadata["weights"]["sha256"]) == 64


def test_decoding_equals_cozoo_video_reader(exported):
    from cozoo.data.video import iter_frames

    _, video = exported
    for ours, theirs in zip(iter_rgb_frames(video), iter_frames(video), strict=True):
        np.testing.assert_array_equal(ours, theirs.numpy())


def test_runtime_runs_without_torch(exported, tmp_path):
    """A subprocess in which `import torch` fails streams the video through the exported model."""
    folder, video = exported
    script = textwrap.dedent(f"""
        import sys
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("torch imported despite the blocker")
        from cozoo.runtime import OnnxVideoStreamer
        streamer = OnnxVideoStreamer({str(folder / 'colate_fusion.onnx')!r})
        predictions = list(streamer.stream_video({str(video)!r}))
        assert "torch" not in sys.modules
        print(len(predictions), predictions[0].frame_index, predictions[-1].logits.argmax())
    """)
    env = torch_blocked_env(tmp_path / "blocker", ROOT)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    expected = list(OnnxVideoStreamer(folder / "colate_fusion.onnx").stream_video(video))
    assert result.stdout.split() == [str(len(expected)), str(expected[0].frame_index),
                                     str(expected[-1].logits.argmax())]


def test_cli_export_refuses_a_regular_model(tmp_path, capsys):
    assert main(["export", "x3d_s", "--out", str(tmp_path)]) == 2
    assert "x3d_s is not a continual model: export its continual form (cox3d_s" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_runtime_command_reports_a_bad_metadata_file(exported, tmp_path, capsys):
    from cozoo.runtime.__main__ import main as runtime_main

    folder, video = exported
    onnx_copy = tmp_path / "model.onnx"
    onnx_copy.write_bytes((folder / "colate_fusion.onnx").read_bytes())
    (tmp_path / "model.json").write_text("not json")
    assert runtime_main([str(onnx_copy), str(video)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
