"""torchrun with 2 processes (gloo, CPU): fine-tuning ends with the weights of one process, a killed run
resumes to the weights of an uninterrupted one (also under another number of processes), and
distributed evaluation writes the metrics of one process. `python -m cozoo` is the command line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from ddp_worker import extract_args
from safetensors.torch import load_file

from cozoo.cli import main as cli
from cozoo.training import finetune, load_checkpoint, load_config

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

RECIPE = {
    "seed": 4,
    # BatchNorm frozen (eval mode): per-process batch statistics would differ from the whole batch's (CPU
    # has no SyncBatchNorm); dropout off: its masks are drawn per process.
    "model": {"name": "late_fusion", "kwargs": {"widths": [8, 8], "dropout": 0.0},
              "freeze": [f"trunk.layer{i}.bn" for i in (1, 2)]},
    "data": {"synthetic": {"classes": ["growing", "shrinking", "moving_right"], "videos_per_class": 4,
                           "val_videos_per_class": 1, "frames": 8, "size": 32},
             "frames": 4, "sampling_rate": 2, "train_crop": 24, "test_crop": 24, "train_short_side": [24, 32],
             "flip": False, "batch_size": 4, "val_clips": 2},
    "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "train": {"epochs": 2, "progress": False, "checkpoint_every_steps": 2},
}


def _recipe(tmp: Path, name: str, data_root: Path) -> Path:
    recipe = json.loads(json.dumps(RECIPE))
    recipe["output_dir"] = str(tmp / name)
    recipe["data"]["root"] = str(data_root)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _weights(run: Path) -> dict:
    return load_checkpoint(run / "last.pt")["model"]


def _assert_close(a: dict, b: dict, exact: bool = False) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=lambda m, k=key: f"{k}: {m}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process here; two under torchrun (tests/ddp_worker.py: uninterrupted, killed and resumed,
    evaluated)."""
    tmp = tmp_path_factory.mktemp("ddp")
    data = tmp / "data"
    single = finetune(load_config(_recipe(tmp, "single", data)))
    _recipe(tmp, "two", data), _recipe(tmp, "killed", data)
    job = _torchrun(str(ROOT / "tests/ddp_worker.py"), str(tmp))
    assert job.returncode == 0, job.stderr[-4000:]
    return tmp, single


def test_two_processes_end_with_the_weights_of_one(runs):
    tmp, single = runs
    _assert_close(_weights(tmp / "two"), _weights(tmp / "single"))
    metrics = [json.loads(line) for line in (tmp / "two" / "metrics.jsonl").read_text().splitlines()]
    for record, expected in zip(metrics, single.metrics + [single.continual], strict=True):
        for key in ("epoch", "step", "val_acc", "val_videos", "train_acc", "continual_val_acc",
                    "continual_videos"):
            assert record.get(key) == expected.get(key), key
        for key in ("train_loss", "val_loss"):
            if key in record:
                assert record[key] == pytest.approx(expected[key], rel=1e-5)
    files = [sorted(p.name for p in (tmp / run).iterdir()) for run in ("two", "single")]
    assert files[0] == files[1]


def test_killed_run_resumes_to_the_uninterrupted_weights(runs):
    tmp, _ = runs
    state = load_checkpoint(tmp / "killed_backup" / "last.pt")
    assert state["progress"]["global_step"] == 2 and len(state["rng_ranks"]) == 2  # the step-2 checkpoint
    _assert_close(_weights(tmp / "killed"), _weights(tmp / "two"), exact=True)  # same world size: bitwise
    # one process resumes the two processes' checkpoint: the same global order (float rounding apart)
    shutil.rmtree(tmp / "killed")
    shutil.copytree(tmp / "killed_backup", tmp / "killed")
    finetune(load_config(tmp / "killed.yaml"), resume=True)
    _assert_close(_weights(tmp / "killed"), _weights(tmp / "two"))


def test_distributed_eval_writes_the_metrics_of_one_process(runs):
    tmp, _ = runs
    data = tmp / "data"
    args = ["eval", "--model", "late_fusion", "--checkpoint", str(tmp / "two" / "last.pt"), "--annotations",
            str(data / "val.csv"), "--videos", str(data / "videos"), "--clips", "2", "--crops", "1"]
    assert cli([*args, "--out", str(tmp / "eval_one")]) == 0
    one, both = (json.loads((tmp / d / "metrics.json").read_text()) for d in ("eval_one", "eval_two"))
    one.pop("seconds"), both.pop("seconds")
    assert both == one
    assert one["num_videos"] == 3
    assert set(one["results"]) == {"clip", "multiview", "stream_last", "stream_mean"}


def test_distributed_extract_writes_the_files_of_one_process(runs):
    tmp, _ = runs
    assert cli(["extract", "--quiet", *extract_args(tmp), "--out", str(tmp / "extract_one")]) == 0
    one = sorted(p.relative_to(tmp / "extract_one") for p in (tmp / "extract_one").rglob("*.safetensors"))
    two = sorted(p.relative_to(tmp / "extract_two") for p in (tmp / "extract_two").rglob("*.safetensors"))
    assert one == two and len(one) == 15
    for name in one:
        a, b = load_file(tmp / "extract_one" / name), load_file(tmp / "extract_two" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_python_m_cozoo_runs_the_command_line():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "cozoo", "models", "x3d_x*"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "x3d_xs" in out.stdout, out.stderr
