"""Resume after a kill mid-epoch ends with bitwise the same weights as an uninterrupted run (CPU)."""

import json

import pytest
import torch

from cozoo.training import FinetuneConfig, load_checkpoint
from cozoo.training.loop import Progress, finetune

CLASSES = ["growing", "shrinking", "moving_down"]  # unchanged by a horizontal flip (flip stays on)


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("resume_data")


def _config(out, data_root, **train) -> FinetuneConfig:
    return FinetuneConfig.from_dict({
        "output_dir": str(out), "seed": 3,
        "model": {"name": "x3d_xs", "kwargs": {"width_factor": 0.5, "depth_factor": 0.2, "head_width": 32,
                                                "dropout": 0.5}},  # dropout: the global RNG matters too
        "data": {"synthetic": {"classes": CLASSES, "videos_per_class": 6, "val_videos_per_class": 1,
                               "frames": 8, "size": 32},
                 "root": str(data_root), "frames": 4, "sampling_rate": 2, "train_crop": 24, "test_crop": 24,
                 "train_short_side": [24, 32], "flip": True, "batch_size": 4},
        "optim": {"name": "sgd", "lr": 0.05, "warmup_epochs": 0.5, "nesterov": True},
        "train": {"epochs": 3, "clip_grad_norm": 1.0, "progress": False, "continual_eval": False, **train},
    })


def _kill_at(step: int):
    def hook(progress: Progress) -> None:
        if progress.global_step == step:
            raise Killed(f"killed after step {step}")
    return hook


def _equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _strip_times(path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("clips_per_s", "train_time_s")} for r in records]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("uninterrupted")
    finetune(_config(out, data_root))
    return out


@pytest.mark.parametrize("every", [0, 2], ids=["replay-from-epoch-checkpoint", "mid-epoch-checkpoint"])
def test_resume_after_kill_is_exact(tmp_path, data_root, reference, every):
    # 18 videos, batch 4: 4 steps per epoch; the kill comes after step 7, in the middle of epoch 2.
    config = _config(tmp_path, data_root, checkpoint_every_steps=every)
    with pytest.raises(Killed):
        finetune(config, on_step=_kill_at(7))
    saved = load_checkpoint(tmp_path / "last.pt")["progress"]
    assert (saved["epoch"], saved["step_in_epoch"]) == ((1, 2) if every else (1, 0))
    assert len(_strip_times(tmp_path / "metrics.jsonl")) == 1  # only the finished epoch

    result = finetune(config, resume=True)
    final, expected = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(reference / "last.pt")
    assert _equal_states(final["model"], expected["model"])
    assert final["optimizer"]["state"].keys() == expected["optimizer"]["state"].keys()
    for key, state in final["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], expected["optimizer"]["state"][key]["momentum_buffer"])
    assert final["scheduler"] == expected["scheduler"]
    assert torch.equal(final["rng"]["torch"], expected["rng"]["torch"])
    assert _strip_times(tmp_path / "metrics.jsonl") == _strip_times(reference / "metrics.jsonl")
    assert result.best_val_acc == expected["best_val_acc"]


def test_finished_run_resumes_to_the_same_place(tmp_path, data_root):
    config = _config(tmp_path, data_root, epochs=1)
    first = finetune(config)
    before = load_checkpoint(tmp_path / "last.pt")
    again = finetune(config, resume=True)  # nothing left to train: same weights, same metrics
    assert again.metrics == first.metrics
    assert _equal_states(load_checkpoint(tmp_path / "last.pt")["model"], before["model"])
