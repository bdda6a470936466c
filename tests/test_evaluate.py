"""Evaluation: metric arithmetic, checkpoint loading, the three protocols, reports and ``cozoo eval``."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import matplotlib.image
import pytest
import torch
from helpers import faststart_video, garbled_video
from torch import nn

import cozoo
from cozoo.cli import main
from cozoo.data import eval_transform, generate_synthetic_dataset, read_frames
from cozoo.data.kinetics import build_label_map, read_annotations, resolve_video_paths
from cozoo.data.synthetic import SyntheticPaths
from cozoo.evaluation.evaluate import (
    LoadedModel,
    PaddedLastStep,
    co3d_step,
    confusion_matrix,
    evaluate,
    evaluated,
    load_checkpoint,
    load_model,
    names_from_label_map,
    plot_confusion_matrix,
    predict_streams,
    predict_videos,
    summary_lines,
    topk_accuracy,
)
from cozoo.inference.video import frame_transform
from cozoo.registry import get_config
from cozoo.training.config import load_config
from cozoo.weights.converters import CheckpointMismatchError

CROP = 32
CLASSES = ("moving_left", "moving_right", "growing", "shrinking", "rotating_cw", "rotating_ccw")
NAMES = sorted(CLASSES)  # label-map order
WIDTHS = (4, 8)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> SyntheticPaths:
    """6 classes x 2 validation videos of 12 frames, 32x48."""
    root = tmp_path_factory.mktemp("eval")
    return generate_synthetic_dataset(root / "data", CLASSES, videos_per_class=1, val_videos_per_class=2,
                                      frames=12, size=(32, 48))


# -- metric arithmetic --------------------------------------------------------------------------------


def test_topk_accuracy_and_confusion_matrix_are_exact() -> None:
    scores = torch.tensor([
        [0.9, 0.05, 0.03, 0.01, 0.005, 0.005, 0.0],  # target 0: top-1 hit
        [0.1, 0.2, 0.3, 0.11, 0.15, 0.12, 0.02],  # target 3: rank 5 -> top-5 hit only
        [0.5, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05],  # target 6: rank 7 -> miss
        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],  # target 2: top-1 hit
    ])
    targets = torch.tensor([0, 3, 6, 2])
    assert topk_accuracy(scores, targets) == {"top1": 0.5, "top5": 0.75}
    assert topk_accuracy(scores, targets, ks=(1, 2, 3)) == {"top1": 0.5, "top2": 0.5, "top3": 0.5}
    ties = torch.zeros(2, 3)  # all tied: the lower class index ranks first
    assert topk_accuracy(ties, torch.tensor([0, 2]), ks=(1, 2, 5)) == {"top1": 0.5, "top2": 0.5, "top5": 1.0}
    matrix = confusion_matrix(scores.argmax(1), targets, 7)
    expected = torch.zeros(7, 7, dtype=torch.long)
    expected[0, 0] = expected[3, 2] = expected[6, 0] = expected[2, 2] = 1
    assert torch.equal(matrix, expected)
    with pytest.raises(ValueError, match="class indices"):
        confusion_matrix(torch.tensor([7]), torch.tensor([0]), 7)
    with pytest.raises(ValueError, match=r"expected scores \(N, C\)"):
        topk_accuracy(scores, targets[:2])


class ViewStub(nn.Module):
    """Returns ``table[video] + offset * view`` for clips whose first value encodes (video, view)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        code = clips[:, 0, 0, 0, 0].long()
        video, view = code // 10, code % 10
        return self.table[video] + torch.tensor([1.0, 0.0, -1.0]) * view[:, None]


def test_predict_videos_averages_softmax_over_views() -> None:
    table = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 1.0, 0.0]])
    clips = torch.zeros(6, 3, 2, 4, 4)
    videos = torch.tensor([0, 0, 1, 1, 2, 2])
    views = torch.tensor([0, 1, 0, 1, 0, 1])
    clips[:, 0, 0, 0, 0] = (videos * 10 + views).float()
    labels = torch.tensor([0, 0, 2, 2, 0, 0])
    batches = [(clips[:4], labels[:4], videos[:4]), (clips[4:], labels[4:], videos[4:])]  # split mid-video
    probs, targets = predict_videos(ViewStub(table), batches, num_videos=3, num_classes=3)
    offsets = torch.tensor([1.0, 0.0, -1.0])
    expected = torch.stack([(table[v].softmax(0) + (table[v] + offsets).softmax(0)) / 2 for v in range(3)])
    torch.testing.assert_close(probs, expected)
    assert targets.tolist() == [0, 2, 0]
    assert topk_accuracy(probs, targets, ks=(1,)) == {"top1": pytest.approx(2 / 3)}
    # A stand-in view (video index -1) is left out; a video with no view gets target -1 and is dropped.
    stand_in = (clips[:1], torch.tensor([2]), torch.tensor([-1]))
    probs4, targets4 = predict_videos(ViewStub(table), [*batches, stand_in], num_videos=4, num_classes=3)
    assert targets4.tolist() == [0, 2, 0, -1]
    with pytest.warns(UserWarning, match="1 video"):
        kept, kept_targets, dropped = evaluated(probs4, targets4, "clip")
    torch.testing.assert_close(kept, expected)
    assert kept_targets.tolist() == [0, 2, 0] and dropped == 1
    with pytest.raises(RuntimeError, match="no video could be decoded"):
        evaluated(probs4[3:], targets4[3:], "clip")


# -- models with controlled outputs on real videos ----------------------------------------------------


def _constant_model(logits: list[float]) -> nn.Module:
    """A late fusion net whose classifier ignores its input: every clip, window and frame step gives
    ``logits`` exactly, in clip and continual mode alike."""
    model = cozoo.create_model("late_fusion", num_classes=len(logits), widths=WIDTHS)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor(logits))
    return model.eval()


def _loaded(model: nn.Module, pool_window: int = 8) -> LoadedModel:
    return LoadedModel("late_fusion", model, get_config("late_fusion"), list(NAMES), pool_window)


def test_evaluate_constant_predictions_give_exact_metrics(data: SyntheticPaths, tmp_path: Path) -> None:
    logits = [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]  # ranks NAMES[0] > NAMES[1] > ... for every video
    metrics = evaluate(_loaded(_constant_model(logits)), data.val_csv, data.video_root, split="val",
                       num_clips=2, crop=CROP, sampling_rate=1, out_dir=tmp_path / "report")
    assert metrics["num_videos"] == 12 and metrics["skipped_videos"] == 0 and metrics["target_fps"] is None
    assert set(metrics["results"]) == {"clip", "multiview", "stream_last", "stream_mean"}
    expected = torch.zeros(6, 6, dtype=torch.long)
    expected[:, 0] = 2  # two videos per class, all predicted as class 0
    for result in metrics["results"].values():
        assert result["top1"] == pytest.approx(2 / 12) and result["top5"] == pytest.approx(10 / 12)
        assert torch.equal(torch.tensor(result["confusion_matrix"]), expected)
    assert metrics["results"]["multiview"]["clips"] == 2 and metrics["results"]["multiview"]["crops"] == 3
    stream = metrics["results"]["stream_last"]
    assert (stream["sampling_rate"], stream["pool_window"], stream["padded_videos"]) == (1, 8, 0)
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert saved["results"] == metrics["results"] and saved["classes"] == NAMES
    for result in metrics["results"]:
        image = matplotlib.image.imread(tmp_path / "report" / f"confusion_{result}.png")
        assert image.ndim == 3 and image.shape[0] > 300 and image.std() > 0.01


def test_streaming_uses_the_continual_model_with_the_same_weights(data: SyntheticPaths) -> None:
    torch.manual_seed(0)
    regular = cozoo.create_model("late_fusion", num_classes=6, widths=WIDTHS).eval()
    loaded = _loaded(regular, pool_window=4)
    continual = loaded.continual()
    assert continual is loaded.continual()  # built once
    for key, value in regular.state_dict().items():
        assert torch.equal(continual.state_dict()[key], value)
    label_map = build_label_map(CLASSES)
    pairs, _ = resolve_video_paths(read_annotations(data.val_csv, "val"), data.video_root)
    videos = [(path, label_map[record.label]) for record, path in pairs[:3]]
    out = predict_streams(continual, videos, frame_transform(loaded.config, CROP), 2, 6)
    transform = eval_transform(loaded.config, crop=CROP)
    with torch.no_grad():
        for row, (path, label) in enumerate(videos):
            fed = transform(read_frames(path))[:, ::2]  # 6 of the 12 frames; pool window 4
            windows = torch.stack([fed[:, t - 3 : t + 1] for t in range(3, 6)])
            probs = regular(windows).softmax(1)
            torch.testing.assert_close(out["last"][row], probs[-1], rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(out["mean"][row], probs.mean(0), rtol=1e-4, atol=1e-6)
            assert out["targets"][row] == label
    assert out["padded_videos"] == 0
    # Pool window 8 at every 2nd frame needs 8 steps; the 6-step videos are padded with their last frame.
    padded = predict_streams(_loaded(regular, pool_window=8).continual(), videos,
                             frame_transform(loaded.config, CROP), 2, 6)
    assert padded["padded_videos"] == 3 and torch.equal(padded["last"], padded["mean"])


# -- checkpoints --------------------------------------------------------------------------------------


def test_load_model_from_a_fine_tuning_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(3)
    trained = cozoo.create_model("late_fusion", num_classes=6, widths=WIDTHS).eval()
    path = tmp_path / "ft.pt"
    torch.save({"model": trained.state_dict(), "label_map": build_label_map(CLASSES),
                "config": {"model": "late_fusion", "epochs": 2}}, path)
    ckpt = load_checkpoint(path)
    assert ckpt.class_names == NAMES and ckpt.config == {"model": "late_fusion", "epochs": 2}
    clip = torch.randn(2, 3, 8, CROP, CROP)
    for name in ("late_fusion", "colate_fusion"):  # a continual name loads its source model
        loaded = load_model(name, checkpoint=path, widths=WIDTHS)
        assert loaded.class_names == NAMES and loaded.config.name == "late_fusion"
        assert loaded.pool_window == 8 and loaded.checkpoint == str(path)
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(clip), trained(clip))
    plain = tmp_path / "plain.pt"
    torch.save(trained.state_dict(), plain)
    loaded = load_model("late_fusion", checkpoint=plain, widths=WIDTHS, pool_window=4)
    assert loaded.class_names == [f"class_{i}" for i in range(6)] and loaded.pool_window == 4
    with pytest.raises(ValueError, match="3 class names but the checkpoint's classifier 'fc.weight' has 6"):
        load_model("late_fusion", checkpoint=plain, widths=WIDTHS, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="either a checkpoint file or pretrained"):
        load_model("late_fusion", checkpoint=plain, pretrained=True)
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save({"model": {"fc.weight": "not a tensor"}}, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError, match="'model' does not hold a state dict"):
        load_checkpoint(tmp_path / "bad.pt")
    assert load_model("late_fusion").class_names[:2] == ["abseiling", "air drumming"]  # Kinetics-400 default


def test_load_model_builds_a_finetuned_checkpoint_from_its_recipe(tmp_path: Path) -> None:
    """A ``cozoo finetune`` checkpoint of a slim X3D-XS (the shipped synthetic recipe) loads with the recipe's
    builder arguments and clip settings; a plain state dict of it needs them passed, and says so."""
    root = Path(__file__).resolve().parents[1]
    recipe = load_config(root / "configs" / "finetune" / "synthetic_x3d.yaml")
    torch.manual_seed(0)
    trained = cozoo.create_model("x3d_xs", num_classes=4, **recipe.model.kwargs).eval()
    path = tmp_path / "best.pt"
    torch.save({"model": trained.state_dict(), "label_map": build_label_map(["a", "b", "c", "d"]),
                "config": recipe.as_dict()}, path)
    clip = torch.randn(1, 3, 8, 28, 28)
    for name in ("x3d_xs", "cox3d_xs"):
        loaded = load_model(name, checkpoint=path)
        config = loaded.config
        assert (config.frames, config.sampling_rate, config.test_crop) == (8, 2, 28)
        assert config.test_short_side == recipe.data.test_short_side  # None: resize to the crop
        assert loaded.pool_window == 8 and loaded.class_names == ["a", "b", "c", "d"]
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(clip), trained(clip))
    assert load_model("cox3d_xs", checkpoint=path, pool_window=16).pool_window == 16
    wider = recipe.as_dict()
    wider["data"]["test_short_side"] = 40  # validation resized to 40 before the 28 crop: eval does too
    torch.save({"model": trained.state_dict(), "label_map": build_label_map(["a", "b", "c", "d"]),
                "config": wider}, path)
    assert eval_transform(load_model("x3d_xs", checkpoint=path).config).short_side == (40, 40)
    with pytest.raises(ValueError, match="fine-tuned from 'x3d_xs', not 'x3d_s'"):
        load_model("cox3d_s", checkpoint=path)
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match=f"pool_window must be a positive whole number .*, got {bad}"):
            load_model("cox3d_xs", checkpoint=path, pool_window=bad)
    plain = tmp_path / "plain.pt"
    torch.save(trained.state_dict(), plain)
    mismatch = r"plain.pt does not fit x3d_xs as built here .*default"
    with pytest.raises(CheckpointMismatchError, match=mismatch):
        load_model("x3d_xs", checkpoint=plain)
    loaded = load_model("x3d_xs", checkpoint=plain, **recipe.model.kwargs)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(clip), trained(clip))


def test_load_model_from_a_published_format_file(tmp_path: Path) -> None:
    """A PyTorchVideo ``{"model_state": ...}`` file is converted on load (X3D-XS, via its continual name)."""
    from pytorchvideo.models import hub

    torch.manual_seed(0)
    reference = hub.x3d_xs(pretrained=False).eval()
    torch.save({"model_state": reference.state_dict(), "epoch": 1}, tmp_path / "x3d_xs_copy.pyth")
    loaded = load_model("cox3d_xs", checkpoint=tmp_path / "x3d_xs_copy.pyth")
    assert loaded.config.name == "x3d_xs" and loaded.class_names[-1] == "zumba"
    clip = torch.randn(1, 3, 4, 160, 160)  # the reference's fixed-size pool is global at 160 px
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(clip).softmax(1), reference(clip), rtol=1e-4, atol=1e-6)


def test_names_from_label_map() -> None:
    assert names_from_label_map({"b": 1, "a": 0}) == ["a", "b"]
    assert names_from_label_map(["x", "y"]) == ["x", "y"]
    with pytest.raises(ValueError, match="indices must be 0..1"):
        names_from_label_map({"a": 0, "b": 2})
    with pytest.raises(ValueError, match="distinct"):
        names_from_label_map(["x", "x"])


def test_plot_confusion_matrix_many_classes(tmp_path: Path) -> None:
    matrix = torch.eye(50, dtype=torch.long) * 3
    path = plot_confusion_matrix(matrix, [f"c{i}" for i in range(50)], tmp_path / "cm.png")
    assert matplotlib.image.imread(path).std() > 0.01
    with pytest.raises(ValueError, match="does not match 4 classes"):
        plot_confusion_matrix(matrix, ["a", "b", "c", "d"], tmp_path / "x.png")


# -- command line -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Default-width late fusion (the CLI builds registry defaults) with constant logits and a label map."""
    model = cozoo.create_model("late_fusion", num_classes=6)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))  # ranks NAMES[5] first
    path = tmp_path_factory.mktemp("cli") / "ft.pt"
    torch.save({"model": model.state_dict(), "label_map": build_label_map(CLASSES)}, path)
    return path


def test_cli_eval_writes_json_and_pngs(data: SyntheticPaths, checkpoint: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["eval", "--model", "late_fusion", "--checkpoint", str(checkpoint), "--annotations",
                 str(data.val_csv), "--videos", str(data.video_root), "--split", "val", "--modes", "clip",
                 "stream", "--crop", str(CROP), "--sampling-rate", "1", "--out", str(out), "--json"])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics["results"]) == {"clip", "stream_last", "stream_mean"}
    for result in metrics["results"].values():
        assert result["top1"] == pytest.approx(2 / 12) and result["top5"] == pytest.approx(10 / 12)
        assert [row[5] for row in result["confusion_matrix"]] == [2] * 6
    assert json.loads((out / "metrics.json").read_text())["results"] == metrics["results"]
    for result in metrics["results"]:
        assert matplotlib.image.imread(out / f"confusion_{result}.png").std() > 0.01
    code = main(["eval", "--model", "late_fusion", "--checkpoint", str(checkpoint), "--annotations",
                 str(data.val_csv), "--videos", str(data.video_root), "--modes", "clip", "--crop", str(CROP)])
    table = capsys.readouterr().out.splitlines()
    assert code == 0 and table[0] == "late_fusion: 12 videos, 6 classes"
    assert table[2].split()[:3] == ["clip", "16.67", "83.33"]


def test_cli_eval_errors(data: SyntheticPaths, checkpoint: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval", "--model", "late_fusion", "--videos", str(data.video_root), "--modes", "clip"]
    assert main([*base, "--annotations", str(tmp_path / "none.csv"), "--checkpoint", str(checkpoint)]) == 2
    assert "cozoo eval: error: annotation file not found" in capsys.readouterr().err
    assert main([*base, "--annotations", str(data.val_csv)]) == 2  # Kinetics-400 names: no 'growing'
    err = capsys.readouterr().err
    assert "none of the labels of" in err and "is a class of the model (e.g. ['abseiling'" in err
    assert main([*base, "--annotations", str(data.val_csv), "--checkpoint", str(checkpoint), "--split",
                 "test"]) == 2
    assert "no videos in" in capsys.readouterr().err


def test_a_short_video_is_sampled_within_what_decodes_and_a_broken_one_left_out(
    data: SyntheticPaths, tmp_path: Path
) -> None:
    root = tmp_path / "videos"
    shutil.copytree(data.video_root, root)
    whole = faststart_video(tmp_path / "whole.mp4").read_bytes()
    (root / "cut_000000_000001.mp4").write_bytes(whole[: len(whole) // 2])  # 3 of its 12 frames decode
    garbled_video(root / "garbled_000000_000001.mp4")  # fails to decode part-way: not replaced, left out
    csv = tmp_path / "val.csv"
    csv.write_text(data.val_csv.read_text() + "growing,cut,0,1,val\nshrinking,garbled,0,1,val\n")
    logits = [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]  # always 'growing'
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluate(_loaded(_constant_model(logits)), csv, root, split="val",
                           modes=("clip", "multiview"), num_clips=2, crop=CROP)
    messages = [str(w.message) for w in caught]
    assert any("decodes 3 of the 12 frames it declares" in m for m in messages)
    assert any("1 video(s) left out, as they failed to decode part-way" in m for m in messages)
    assert summary_lines(metrics)[2].endswith("; 13 videos (1 failed part-way)")
    assert metrics["num_videos"] == 14  # frame 0 of both decodes, so the probe keeps them
    for result in metrics["results"].values():
        assert result["num_videos"] == 13 and result["undecodable_videos"] == 1
        assert result["top1"] == pytest.approx(3 / 13)  # 2 + the cut 'growing' video


def test_videos_of_classes_the_model_lacks_are_left_out_with_a_warning(data: SyntheticPaths) -> None:
    """A model fine-tuned on a class subset, evaluated on the full validation list."""
    model = _constant_model([3.0, 2.0, 1.0])
    loaded = LoadedModel("late_fusion", model, get_config("late_fusion"), NAMES[:3], 8)
    with pytest.warns(UserWarning, match=r"6 video\(s\) of 3 label\(s\) that are not classes of the model"):
        metrics = evaluate(loaded, data.val_csv, data.video_root, split="val", modes=("clip",), crop=CROP)
    assert (metrics["num_videos"], metrics["outside_classes_videos"]) == (6, 6)
    assert metrics["results"]["clip"]["top1"] == pytest.approx(2 / 6)  # the 2 videos of class 0


# -- the Co3D protocol ------------------------------------------------------------------------------


def test_co3d_mode_scores_the_padded_output_of_step_delay(data: SyntheticPaths) -> None:
    """Late fusion has no temporal padding and a pool of 8 frames: the Co3D score of a video (its 8-frame
    centre clip stepped with a padded warm-up, output of step delay = 7) is the regular model's on the
    same centre clip, i.e. the clip protocol's."""
    torch.manual_seed(0)
    loaded = _loaded(cozoo.create_model("late_fusion", num_classes=6, widths=WIDTHS).eval())
    metrics = evaluate(loaded, data.val_csv, data.video_root, split="val", modes=["clip", "co3d"], crop=CROP)
    clip, co3d = metrics["results"]["clip"], metrics["results"]["co3d"]
    assert (co3d["scored_step"], co3d["frames"], co3d["warmup"]) == (7, 8, "padded")
    assert co3d["confusion_matrix"] == clip["confusion_matrix"] and co3d["top1"] == clip["top1"]
    assert "padded warm-up, output of step 7" in summary_lines(metrics)[-1]


def test_co3d_step_follows_the_co3d_rule() -> None:
    model = cozoo.create_model("cox3d_s_64").eval()
    assert co3d_step(model) == 91  # max(receptive field - padding - 1, frame_delay - 1) = 120 - 28 - 1
    assert co3d_step(model, frame_delay=100) == 99
    strided = cozoo.create_model("coi3d_r50", num_classes=3).eval()  # delay 24, stride 2
    assert co3d_step(strided, frame_delay=27) == 26
    with pytest.raises(ValueError, match="scores step 27, on which the model emits nothing"):
        co3d_step(strided, frame_delay=28)
    tiny = cozoo.create_model("colate_fusion", num_classes=3, widths=WIDTHS).eval()
    clip = torch.randn(2, 3, 9, 16, 16)
    with torch.no_grad():
        scored = PaddedLastStep(tiny)(clip)
        expected = tiny.forward_steps(clip, warmup="padded")[:, :, -1]
    torch.testing.assert_close(scored, expected)


def test_cli_eval_protocol_co3d_picks_the_continual_protocol(data: SyntheticPaths, checkpoint: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "--model", "colate_fusion", "--checkpoint", str(checkpoint), "--annotations",
                 str(data.val_csv), "--videos", str(data.video_root), "--split", "val", "--protocol", "co3d",
                 "--crop", str(CROP), "--json"])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics["results"]) == {"co3d"} and metrics["results"]["co3d"]["top1"] == pytest.approx(2 / 12)
    code = main(["eval", "--model", "late_fusion", "--checkpoint", str(checkpoint), "--annotations",
                 str(data.val_csv), "--videos", str(data.video_root), "--protocol", "co3d",
                 "--modes", "clip"])
    assert code != 0 and "either --modes or --protocol" in capsys.readouterr().err
