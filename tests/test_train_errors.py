"""Bad inputs give clear errors or skips, and checkpoints are never lost or half-written."""

import shutil
import warnings

import pytest
import torch

from cozoo import create_model
from cozoo.cli import main
from cozoo.data import AnnotationError, CorruptVideoWarning, MissingVideoWarning, read_annotations
from cozoo.training import ConfigError, FinetuneConfig, load_checkpoint, load_config
from cozoo.training import checkpoint as checkpoint_module
from cozoo.training.loop import finetune

CLASSES = ["growing", "shrinking"]


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors_data")
    finetune(_config(root / "seed_run", root))  # generates the data once
    return root


def _config(out, root, epochs=1, **data) -> FinetuneConfig:
    return FinetuneConfig.from_dict({
        "output_dir": str(out),
        "model": {"name": "late_fusion", "kwargs": {"widths": [4, 8], "dropout": 0.0}},
        "data": {"synthetic": {"classes": CLASSES, "videos_per_class": 4, "val_videos_per_class": 2,
                               "frames": 8, "size": 16},
                 "root": str(root), "frames": 4, "sampling_rate": 1, "train_crop": 16, "test_crop": 16,
                 "batch_size": 4, **data},
        "train": {"epochs": epochs, "progress": False, "continual_eval": False},
    })


def _kinetics_config(out, root) -> FinetuneConfig:
    config = _config(out, root)
    config.data.synthetic = None
    config.data.train_csv, config.data.val_csv = str(root / "train.csv"), str(root / "val.csv")
    config.data.video_root = str(root / "videos")
    return config


def test_wrong_csv_columns_is_a_clear_error(tmp_path, synthetic_root, capsys):
    root = shutil.copytree(synthetic_root, tmp_path / "data", ignore=shutil.ignore_patterns("seed_run"))
    text = (root / "train.csv").read_text().replace("youtube_id", "video_id", 1)
    (root / "train.csv").write_text(text)
    with pytest.raises(AnnotationError, match="missing required column.*youtube_id"):
        finetune(_kinetics_config(tmp_path / "run", root))
    assert not (tmp_path / "run" / "last.pt").exists()

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: {name: late_fusion}\n")
    code = main(["finetune", str(recipe), f"output_dir={tmp_path / 'cli'}",
                 f"data.train_csv={root}/train.csv", f"data.val_csv={root}/val.csv",
                 f"data.video_root={root}/videos"])
    assert code == 2
    assert "missing required column(s) youtube_id" in capsys.readouterr().err


def test_corrupt_videos_are_skipped_with_a_warning(tmp_path, synthetic_root):
    root = shutil.copytree(synthetic_root, tmp_path / "data", ignore=shutil.ignore_patterns("seed_run"))
    for split in ("train", "val"):
        record = read_annotations(root / f"{split}.csv")[0]
        (root / "videos" / split / record.label / record.filename).write_bytes(b"\x00garbage" * 64)
    with pytest.warns(CorruptVideoWarning, match="cannot decode video") as caught:
        result = finetune(_kinetics_config(tmp_path / "run", root))
    assert len({str(w.message) for w in caught}) == 2  # one per bad file
    assert result.metrics[-1]["val_videos"] == 3  # 4 val videos, the corrupt one dropped
    assert load_checkpoint(tmp_path / "run" / "last.pt")["progress"]["epoch"] == 1


def test_missing_videos_are_left_out_of_the_saved_subset_and_an_empty_set_is_named(tmp_path, synthetic_root):
    root = shutil.copytree(synthetic_root, tmp_path / "data", ignore=shutil.ignore_patterns("seed_run"))
    records = read_annotations(root / "train.csv")
    gone = records[0]
    (root / "videos" / "train" / gone.label / gone.filename).unlink()
    with pytest.warns(MissingVideoWarning):
        finetune(_kinetics_config(tmp_path / "run", root))
    assert read_annotations(tmp_path / "run" / "subset.csv") == records[1:]
    for record in records:  # every training video of one class gone: its output would stay untrained
        if record.label == gone.label:
            (root / "videos" / "train" / record.label / record.filename).unlink(missing_ok=True)
    with pytest.warns(UserWarning, match=rf"no training video was found for class\(es\) \['{gone.label}'\]"):
        finetune(_kinetics_config(tmp_path / "run1", root))
    shutil.rmtree(root / "videos" / "val")
    empty = "validation set: no usable videos"
    with pytest.warns(MissingVideoWarning), pytest.raises(RuntimeError, match=empty):
        finetune(_kinetics_config(tmp_path / "run2", root))


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, synthetic_root, monkeypatch):
    out = tmp_path / "run"
    finetune(_config(out, synthetic_root))
    before = load_checkpoint(out / "last.pt")

    def broken_save(obj, file):
        file.write(b"partial checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
    config = _config(out, synthetic_root, epochs=2)
    with pytest.raises(ConfigError, match="train.epochs: 1 -> 2"):
        finetune(config, resume=True)  # resuming with a changed recipe is refused
    with pytest.raises(OSError, match="disk full"):
        checkpoint_module.save_atomic({"format": "x"}, out / "last.pt")
    after = load_checkpoint(out / "last.pt")
    assert all(torch.equal(after["model"][k], before["model"][k]) for k in before["model"])
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temporary files


def test_existing_run_is_not_overwritten(tmp_path, synthetic_root):
    out = tmp_path / "run"
    finetune(_config(out, synthetic_root))
    stamp = (out / "last.pt").stat().st_mtime_ns
    with pytest.raises(ValueError, match="already holds a checkpoint.*--resume"):
        finetune(_config(out, synthetic_root))
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        finetune(_config(tmp_path / "fresh", synthetic_root), resume=True)
    assert (out / "last.pt").stat().st_mtime_ns == stamp


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*optim.learning_rate"):
        FinetuneConfig.from_dict({"model": {"name": "x3d_xs"}, "optim": {"learning_rate": 0.1},
                                  "data": {"synthetic": {}}})
    with pytest.raises(ConfigError, match="train.epochs must be int"):
        FinetuneConfig.from_dict({"model": {"name": "x3d_xs"}, "train": {"epochs": "ten"},
                                  "data": {"synthetic": {}}})
    with pytest.raises(ConfigError, match="train_csv, val_csv and video_root"):
        FinetuneConfig.from_dict({"model": {"name": "x3d_xs"}})
    recipe = load_config("configs/finetune/kinetics_subset_x3d_s.yaml",
                         ["optim.lr=0.5", "data.classes=[a, b]"])
    assert recipe.model.pretrained is True and recipe.optim.lr == 0.5 and recipe.data.classes == ["a", "b"]
    assert load_config("configs/finetune/synthetic_x3d.yaml", ["optim.lr=1e-3"]).optim.lr == 0.001  # YAML 1.1
    for text in ("fast", "inf", "nan"):
        with pytest.raises(ConfigError, match=f"optim.lr must be float, got '{text}'"):
            load_config("configs/finetune/synthetic_x3d.yaml", [f"optim.lr={text}"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config("configs/finetune/synthetic_x3d.yaml", ["epochs"])


@pytest.mark.parametrize(("override", "message"), [
    ({"train": {"clip_grad_norm": -1.0}}, r"train.clip_grad_norm must be positive \(or null: no clipping\)"),
    ({"train": {"label_smoothing": 2.0}}, r"train.label_smoothing must be in \[0, 1\), got 2.0"),
    ({"optim": {"betas": [0.9]}}, r"optim.betas must be two numbers in \[0, 1\)"),
    ({"optim": {"lr": 0.01, "min_lr": 1.0}}, r"optim.min_lr must be in \[0, optim.lr = 0.01\], got 1.0"),
    ({"seed": -1}, "seed must be a non-negative integer, got -1"),
    ({"data": {"synthetic": {"fps": 0.0}}}, "data.synthetic.fps must be positive, got 0.0"),
    ({"data": {"synthetic": {"classes": ["spinning"]}}}, "data.synthetic.classes: unknown synthetic class"),
    ({"data": {"synthetic": {}, "flip": True}},
     r"data.flip is on, but a horizontal flip turns the synthetic classes \['moving_left', 'moving_right'"),
    ({"model": {"name": "x3d_xs", "kwargs": {"num_classes": 7}}}, "model.kwargs.num_classes"),
    ({"data": {"synthetic": {}, "train_crop": 0}}, r"data.train_crop must be a positive integer .*got 0"),
    ({"data": {"synthetic": {}, "val_batch_size": 0}}, r"data.val_batch_size must be a positive integer"),
    ({"data": {"synthetic": {}, "train_short_side": [40, 30]}}, r"data.train_short_side must be \[low, "),
    ({"data": {"synthetic": {}, "std": [0.0, 1.0, 1.0]}}, r"data.std must be three positive numbers"),
    ({"data": {"synthetic": {}, "mean": [0.5]}}, r"data.mean must be three numbers"),
    ({"data": {"synthetic": {}, "target_fps": 0}}, r"data.target_fps must be positive"),
    ({"data": {"synthetic": {}, "target_fps": float("inf")}}, r"data.target_fps must be positive"),
    ({"train": {"epochs": 2}, "optim": {"warmup_epochs": 3.0}}, r"optim.warmup_epochs must be at most train"),
])
def test_values_out_of_range_are_refused_naming_the_key(override, message):
    config = {"model": {"name": "x3d_xs"}, "data": {"synthetic": {}}}
    for key, value in override.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig.from_dict(config)


def test_synthetic_data_is_not_flipped_by_default_and_real_data_is():
    synthetic = FinetuneConfig.from_dict({"model": {"name": "x3d_xs"}, "data": {"synthetic": {}}})
    assert synthetic.data.synthetic is not None and not synthetic.data.flip_enabled
    real = FinetuneConfig.from_dict({"model": {"name": "x3d_xs"},
                                     "data": {"train_csv": "t.csv", "val_csv": "v.csv", "video_root": "v"}})
    assert real.data.flip_enabled
    growing = {"synthetic": {"classes": ["growing", "shrinking"]}, "flip": True}
    assert FinetuneConfig.from_dict({"model": {"name": "x3d_xs"}, "data": growing}).data.flip_enabled


@pytest.mark.parametrize("recipe", ["synthetic_x3d.yaml", "kinetics_subset_x3d_s.yaml"])
def test_a_saved_config_reads_back_as_it_was(recipe):
    config = load_config(f"configs/finetune/{recipe}")
    assert FinetuneConfig.from_dict(config.as_dict()) == config


def test_configs_saved_under_the_old_flip_default_still_load_and_resume():
    from cozoo.training.loop import _check_resumable

    old_synthetic = load_config("configs/finetune/synthetic_x3d.yaml").as_dict()
    old_synthetic["data"]["flip"] = True  # the former default, written into checkpoints
    assert FinetuneConfig.from_dict(old_synthetic, validate=False).data.flip is True  # eval/stream read it
    with pytest.raises(ConfigError, match="data.flip is on"):
        FinetuneConfig.from_dict(old_synthetic)  # a new run is still refused
    real = load_config("configs/finetune/kinetics_subset_x3d_s.yaml").as_dict()
    saved = {**real, "data": {**real["data"], "flip": True}}
    _check_resumable(saved, {**real, "data": {**real["data"], "flip": None}})  # the same flip in effect
    with pytest.raises(ConfigError, match="data.flip: True -> False"):
        _check_resumable(saved, {**real, "data": {**real["data"], "flip": False}})


def test_builder_arguments_a_model_does_not_take_are_a_config_error(tmp_path, synthetic_root):
    config = _config(tmp_path / "run", synthetic_root)
    config.model.kwargs["bogus"] = 1
    with pytest.raises(ConfigError, match=r"model.kwargs \['bogus'\] are not arguments of late_fusion's"):
        finetune(config)


def test_freezing_the_backbone_trains_only_the_classifier(tmp_path, synthetic_root):
    config = _config(tmp_path / "run", synthetic_root)
    config.model.freeze = ["backbone"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptVideoWarning)
        finetune(config)
    trained = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)  # the run's initial weights
        untouched = create_model("late_fusion", num_classes=2, widths=[4, 8], dropout=0.0).state_dict()
    assert torch.equal(trained["trunk.layer1.conv.weight"], untouched["trunk.layer1.conv.weight"])
    assert torch.equal(trained["trunk.layer1.bn.running_mean"], untouched["trunk.layer1.bn.running_mean"])
    assert not torch.equal(trained["fc.weight"], untouched["fc.weight"])
