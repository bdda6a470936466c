"""cozoo extract: per-clip features of a regular model and per-frame features of a continual one, written
as safetensors with frame stamps; reruns skip finished videos; a folder or a CSV lists the videos."""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import cozoo
from cozoo.cli import main as cli
from cozoo.data import write_video
from cozoo.data.transforms import eval_transform
from cozoo.data.video import read_frames
from cozoo.inference.extract import list_videos
from cozoo.training import FinetuneConfig

KWARGS = {"widths": [8, 8], "dropout": 0.0}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("extract")
    videos = tmp / "videos"
    rng = torch.Generator().manual_seed(0)
    for name, frames in (("a", 20), ("sub/b", 12)):
        (videos / name).parent.mkdir(parents=True, exist_ok=True)
        write_video(videos / f"{name}.mp4", torch.randint(0, 256, (frames, 32, 40, 3), generator=rng,
                                                          dtype=torch.uint8), fps=10)
    torch.manual_seed(0)
    model = cozoo.create_model("late_fusion", num_classes=3, **KWARGS)
    weights = tmp / "weights.pt"  # as a fine-tuning checkpoint: its recipe names the builder arguments
    recipe = FinetuneConfig.from_dict({"model": {"name": "late_fusion", "kwargs": KWARGS}}, validate=False)
    torch.save({"model": model.state_dict(), "config": recipe.as_dict()}, weights)
    return tmp, videos, weights, model.eval()


def _run(*args: str) -> int:
    return cli(["extract", "--quiet", *args])


def test_list_videos_from_folder_and_csv(setup, tmp_path):
    tmp, videos, _, _ = setup
    assert [v.name for v in list_videos(videos)] == ["a", "sub/b"]
    listing = tmp_path / "list.csv"
    listing.write_text(f"path\n{videos / 'sub/b.mp4'}\n")
    assert [v.path for v in list_videos(listing)] == [videos / "sub/b.mp4"]
    with pytest.raises(FileNotFoundError, match="no folder or CSV"):
        list_videos(tmp_path / "absent")


def test_clip_features_equal_the_models_pre_logits(setup, tmp_path):
    tmp, videos, weights, model = setup
    out = tmp_path / "clip"
    args = ["--model", "late_fusion", "--checkpoint", str(weights), "--videos", str(videos),
            "--out", str(out), "--crop", "24", "--clips", "2"]
    assert _run(*args) == 0
    saved = load_file(out / "sub/b.safetensors")
    config = cozoo.registry.get_config("late_fusion")  # 8 frames every 8: clips of a 12-frame video repeat
    assert saved["frames"].shape == (2, config.frames)
    assert saved["features"].shape == (2, 8)
    transform = eval_transform(config, crop=24)
    clips = torch.stack([transform(read_frames(videos / "sub/b.mp4", f.tolist())) for f in saved["frames"]])
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(clips), pre_logits=True)
    torch.testing.assert_close(saved["features"], expected)
    with safe_open(out / "a.safetensors", "pt") as file:
        assert file.metadata()["protocol"] == "clip" and file.metadata()["model"] == "late_fusion"
    # resumable: finished files are kept as they are, a missing one is redone
    (out / "a.safetensors").unlink()
    before = (out / "sub/b.safetensors").stat().st_mtime_ns
    assert _run(*args) == 0
    assert (out / "a.safetensors").is_file() and (out / "sub/b.safetensors").stat().st_mtime_ns == before


def test_stream_features_are_per_frame_and_stamped(setup, tmp_path):
    tmp, videos, weights, model = setup
    out = tmp_path / "stream"
    assert _run("--model", "colate_fusion", "--checkpoint", str(weights), "--videos", str(videos),
                "--out", str(out), "--crop", "24", "--sampling-rate", "1") == 0
    saved = load_file(out / "a.safetensors")
    continual = cozoo.continual.to_continual(model, pool_window=8).eval()
    assert saved["frames"].tolist() == list(range(continual.first_output, 20))
    # each step averages the last 8 frames: its source clip t-7..t is centred on t-3.5
    assert (saved["centre_frames"] == saved["frames"] - 3.5).all()
    frames = eval_transform(cozoo.registry.get_config("late_fusion"), crop=24)(read_frames(videos / "a.mp4"))
    with torch.no_grad():  # clip mode of the same continual model: one output per stamped frame
        clip = continual.forward_head(continual.forward_features(frames[None]), pre_logits=True)[0].T
    torch.testing.assert_close(saved["features"], clip, rtol=1e-4, atol=1e-5)
