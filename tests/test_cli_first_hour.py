"""A newcomer's first hour (issue 14): the documented commands work as written, say what they need up front,
show progress on stderr (off with --quiet), refuse unsafe or wrong weights clearly, and exit cleanly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
import yaml

import cozoo
from cozoo.cli import build_parser, main
from cozoo.data import write_video
from cozoo.inference.plots import plot_probabilities
from cozoo.inference.video import FramePrediction
from cozoo.version import __version__
from cozoo.zoo import load_zoo_figures

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CLASSES = ["growing", "shrinking", "moving_down"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ten_seconds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 s clip at 30 fps (the length of a Kinetics clip), 32x32 pixels of moving noise."""
    frames = np.random.default_rng(0).integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    return write_video(tmp_path_factory.mktemp("ten") / "a.mp4", frames, fps=30)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = np.random.default_rng(1).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    return write_video(tmp_path_factory.mktemp("short") / "b.mp4", frames, fps=30)


# -- 1: the README's stream example on a 10 s clip ------------------------------------------------------
def _readme_stream_model() -> str:
    match = re.search(r"^cozoo stream VIDEO\.mp4 --model (\S+)", README, re.MULTILINE)
    assert match, "README has no `cozoo stream VIDEO.mp4 --model NAME` example"
    return match.group(1)


def test_readme_stream_example_predicts_within_a_10_s_clip(
    ten_seconds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _readme_stream_model()
    figures = load_zoo_figures()[name]
    assert (figures["first_output"] + 1) * figures["sampling_rate"] <= 300  # 10 s at 30 fps
    plot = tmp_path / "probs.png"
    # As documented, at a tiny crop (the warm-up, in frames, does not depend on the crop).
    assert main(["stream", str(ten_seconds), "--model", name, "--plot", str(plot), "--crop", "32",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if line.startswith("frame ")]) >= 2
    assert plot.is_file() and f"wrote {plot}" in out


def test_stream_says_up_front_what_the_model_needs(
    short_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stream", str(short_clip), "--model", "colate_fusion", "--crop", "32"]) == 1
    captured = capsys.readouterr()
    header = captured.out.splitlines()[0]
    assert "first prediction after 8 model steps (video frame 56 (1.9 s at 30 fps)" in header
    warning = [line for line in captured.err.splitlines() if "this video has" in line]
    assert warning == [
        "cozoo stream: this video has 20 frames (0.7 s at 30 fps), the model's first prediction needs 57 "
        "(1.9 s at 30 fps); no prediction will come: pass --pad to repeat its last frame until the first "
        "prediction, or pick a model with a shorter warm-up (`cozoo models --table`, column '1st out')"]
    assert main(["stream", str(short_clip), "--model", "colate_fusion", "--crop", "32", "--quiet"]) == 1
    assert "this video has" not in capsys.readouterr().err


# -- 2: resuming ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recipe")
    config = {
        "output_dir": str(folder / "default_run"), "seed": 3,
        "model": {"name": "x3d_xs", "kwargs": {"width_factor": 0.5, "depth_factor": 0.2, "head_width": 32}},
        "data": {"synthetic": {"classes": CLASSES, "videos_per_class": 4, "val_videos_per_class": 1,
                               "frames": 8, "size": 32},
                 "frames": 4, "sampling_rate": 2, "train_crop": 24, "test_crop": 24,
                 "train_short_side": [24, 32], "batch_size": 4},
        "optim": {"name": "sgd", "lr": 0.05},
        "train": {"epochs": 1, "continual_eval": True},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_finetune_resume_run_dir_and_override_order(
    recipe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = tmp_path / "run", tmp_path / "data"
    overrides = [f"output_dir={run}", f"data.root={data}", "optim.lr=0.02"]
    assert main(["finetune", str(recipe), *overrides]) == 0
    first = capsys.readouterr()
    # progress on stderr: the validation and the continual check show bars too
    assert "validation" in first.err and "continual check" in first.err
    assert "1 epochs" in first.out
    # the run folder alone: its config.yaml holds the overrides
    assert main(["finetune", "--resume", str(run), "--quiet"]) == 0
    resumed = capsys.readouterr()
    assert f"run folder {run}" in resumed.out and resumed.err == ""
    # the order `--help` shows: CONFIG --resume key=value ...
    assert main(["finetune", str(recipe), "--resume", *overrides, "--quiet"]) == 0
    assert f"run folder {run}" in capsys.readouterr().out
    # a refused resume generates nothing first
    other_data = tmp_path / "other_data"
    assert main(["finetune", "--resume", str(run), "optim.lr=0.5", f"data.root={other_data}", "--quiet"]) == 2
    assert "cannot resume: the config differs" in capsys.readouterr().err
    assert not other_data.exists()
    assert main(["finetune", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "no such run folder" in capsys.readouterr().err


# -- 3: threads ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["stream", "v.mp4", "--model", "cox3d_xs"],
                                     ["eval", "--model", "x3d_xs", "--annotations", "a", "--videos", "d"],
                                     ["finetune", "c.yaml"], ["flops", "x3d_xs"]])
def test_every_computing_command_takes_threads(command: list[str]) -> None:
    args = build_parser().parse_args([*command, "--threads", "3"])
    assert args.threads == 3
    default = build_parser().parse_args(command).threads
    assert default == (1 if command[0] == "stream" else None)  # one thread for batch-1 frame steps


def test_threads_are_applied_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    import cozoo.commands.stream as stream_command

    seen: list[int] = []
    monkeypatch.setattr(stream_command, "_stream", lambda args: seen.append(torch.get_num_threads()) or 0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["stream", "v.mp4", "--model", "cox3d_xs"]) == 0
        assert main(["stream", "v.mp4", "--model", "cox3d_xs", "--threads", "3"]) == 0
        assert seen == [1, 3] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# -- 4 and 9: eval progress on stderr, warnings once, Ctrl-C -------------------------------------------
@pytest.fixture(scope="module")
def eval_data(tmp_path_factory: pytest.TempPathFactory):
    from helpers import faststart_video

    from cozoo.data import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("evaldata")
    data = generate_synthetic_dataset(root / "data", CLASSES, videos_per_class=1, val_videos_per_class=1,
                                      frames=12, size=(32, 48))
    whole = faststart_video(root / "whole.mp4").read_bytes()
    (data.video_root / "cut_000000_000001.mp4").write_bytes(whole[: len(whole) // 2])
    csv = root / "val.csv"
    csv.write_text(data.val_csv.read_text() + "growing,cut,0,1,val\n")
    model = cozoo.create_model("late_fusion", num_classes=len(CLASSES))
    checkpoint = root / "ft.pt"
    torch.save({"model": model.state_dict(), "label_map": {c: i for i, c in enumerate(sorted(CLASSES))}},
               checkpoint)
    return csv, data.video_root, checkpoint


def _eval_args(eval_data) -> list[str]:
    csv, videos, checkpoint = eval_data
    return ["eval", "--model", "late_fusion", "--checkpoint", str(checkpoint), "--annotations", str(csv),
            "--videos", str(videos), "--modes", "clip", "multiview", "stream", "--clips", "2", "--crops", "1",
            "--crop", "32", "--sampling-rate", "1"]


def test_eval_shows_progress_on_stderr_and_each_warning_once(
    eval_data, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_eval_args(eval_data)) == 0
    captured = capsys.readouterr()
    for bar in ("clip", "multiview", "stream"):
        assert f"{bar}:" in captured.err  # tqdm's "desc: n%|..." on stderr
    assert "late_fusion: 4 videos" in captured.out and "%|" not in captured.out
    warnings_shown = [line for line in captured.err.splitlines() if "warning:" in line]
    # the truncated video is noticed by the clip, multiview and stream protocols: told once
    assert len([line for line in warnings_shown if "cut_000000_000001.mp4" in line]) == 1, warnings_shown
    assert main([*_eval_args(eval_data), "--quiet"]) == 0
    assert "%|" not in capsys.readouterr().err


def test_ctrl_c_exits_130_with_one_line(eval_data, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import cozoo.commands.evaluate as eval_command
    import cozoo.commands.weights as weights_command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(eval_command, "evaluate", interrupted)
    assert main(_eval_args(eval_data)) == 130
    assert capsys.readouterr().err == "cozoo eval: interrupted\n"
    monkeypatch.setattr(weights_command, "fetch", interrupted)
    assert main(["weights", "fetch", "x3d_xs"]) == 130
    assert capsys.readouterr().err == "cozoo weights: interrupted\n"


# -- 6: the plot -----------------------------------------------------------------------------------------
def test_one_prediction_plots_a_visible_point_at_its_centre_frame(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    captured: dict[str, Figure] = {}
    import cozoo.inference.plots as plots

    original = plots.save_figure

    def keep(fig, path):  # noqa: ANN001, ANN202
        captured["fig"] = fig
        return original(fig, path)

    plots.save_figure = keep
    try:
        one = FramePrediction(frame_index=100, step=100, logits=torch.tensor([2.0, 0.0, 1.0]),
                              first_frame=40, clip_first=54, clip_last=66)  # centre 60
        path = plot_probabilities([one], CLASSES, tmp_path / "one.png", fps=30)
    finally:
        plots.save_figure = original
    ax = captured["fig"].axes[0]
    lines = ax.get_lines()
    assert lines and all(line.get_marker() not in (None, "None", "") for line in lines)
    assert list(lines[0].get_xdata()) == [60]  # the centre frame, not the emitting frame 100
    assert "centred on" in ax.get_xlabel()
    assert any("seconds" in other.get_xlabel() for other in ax.child_axes)
    image = matplotlib.image.imread(path)
    assert image.std() > 0.01
    # the point is drawn: some pixel has a line colour (not white, grey or black)
    rgb = image[..., :3]
    assert (rgb.max(axis=-1) - rgb.min(axis=-1) > 0.3).any()


def test_plot_refuses_a_non_png_name(
    tmp_path: Path, short_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = FramePrediction(frame_index=1, step=1, logits=torch.zeros(3), first_frame=0, clip_first=0,
                          clip_last=0)
    with pytest.raises(ValueError, match="ending in .png"):
        plot_probabilities([one], CLASSES, tmp_path / "x.jpg")
    assert not (tmp_path / "x.jpg").exists()
    jpeg = str(tmp_path / "x.jpg")
    assert main(["stream", str(short_clip), "--model", "colate_fusion", "--plot", jpeg]) == 2
    assert "give a file name ending in .png" in capsys.readouterr().err


# -- 7 and 8: unsafe and wrong weights -----------------------------------------------------------------
class _RunsCode:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned",))


def test_unsafe_checkpoint_names_the_global_and_gives_no_unsafe_advice(tmp_path: Path) -> None:
    from cozoo.weights.load import WeightsFormatError, read_checkpoint

    path = tmp_path / "evil.pt"
    torch.save({"a": _RunsCode()}, path)
    with pytest.raises(WeightsFormatError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "unsafe" in message and re.search(r"global (posix|nt|os)\.system", message)
    assert "will likely succeed" not in message and "weights_only=False" in message  # "do not load with"
    assert "do not load this file with weights_only=False" in message


def test_html_sent_as_a_checkpoint_is_called_a_web_page(tmp_path: Path) -> None:
    from cozoo.weights.load import WeightsFormatError, read_checkpoint

    path = tmp_path / "X3D_XS.pyth"
    path.write_text("<!DOCTYPE html>\n<html><body>Sign in</body></html>\n")
    with pytest.raises(WeightsFormatError, match="it is an HTML page") as info:
        read_checkpoint(path)
    assert "operand" not in str(info.value)


def _published_file(tmp_path: Path, name: str, filename: str) -> Path:
    model = cozoo.create_model(name)
    path = tmp_path / filename
    torch.save({"model_state": model.state_dict()}, path)
    return path


def test_another_models_published_file_is_refused_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COZOO_OFFLINE", "1")
    xs = _published_file(tmp_path, "x3d_xs", "X3D_XS.pyth")  # X3D-XS and X3D-S have the same shapes
    assert main(["weights", "import", "x3d_s", str(xs)]) == 2
    err = capsys.readouterr().err
    assert "X3D_XS.pyth is the published checkpoint of 'x3d_xs', not of 'x3d_s'" in err and "--force" in err
    assert not (tmp_path / "home" / "weights" / "x3d_s" / "x3d_s.safetensors").exists()
    assert main(["weights", "import", "x3d_s", str(xs), "--force"]) == 0
    assert f"origin: import {xs.resolve()} (forced)" in capsys.readouterr().out
    assert main(["weights", "import", "x3d_xs", str(xs)]) == 0
    assert f"origin: import {xs.resolve()}" in capsys.readouterr().out
    assert main(["weights", "fetch", "x3d_s", "--url", "http://example.invalid/models/X3D_XS.pyth"]) == 2
    assert "X3D_XS.pyth is the published checkpoint of 'x3d_xs'" in capsys.readouterr().err


# -- 9: small ones ---------------------------------------------------------------------------------------
def test_version_and_python_dash_m(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"cozoo {__version__}\n"
    run = subprocess.run([sys.executable, "-m", "cozoo", "--version"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0 and run.stdout == f"cozoo {__version__}\n"


def test_info_is_a_readable_summary_with_json_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "cox3d_s_64"]) == 0
    text = capsys.readouterr().out
    assert len(text.splitlines()) < 20 and "{" not in text.splitlines()[1]
    assert "67.33" in text and "receptive field 120, delay 91" in text
    assert main(["info", "cox3d_s_64", "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["schedule"]["delay"] == 91


def test_nan_frames_warn(recwarn: pytest.WarningsRecorder) -> None:
    model = cozoo.create_model("colate_fusion", num_classes=3, widths=(4, 8)).eval()
    stream = model.stream()
    frame = torch.randn(1, 3, 16, 16)
    for step in range(9):
        stream.push(frame if step != 3 else torch.full_like(frame, float("nan")))
    messages = [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "NaN or Inf" in messages[0]


def test_flops_says_costliest_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "coi3d_r50", "--crop", "32"]) == 0
    out = capsys.readouterr().out
    assert "costliest step" in out and "dearest" not in out
