"""Run by tests/test_distributed.py under torchrun (one launch for everything, as starting processes is
the slow part): ``python -m torch.distributed.run --nproc_per_node=2 tests/ddp_worker.py TMP``.

In TMP: fine-tunes ``two.yaml``; fine-tunes ``killed.yaml`` and stops every process after step 3 (an
exception, as a kill would), rank 0 then copying the run folder to ``killed_backup`` (for the test's
one-process resume), and resumes it; evaluates ``two/last.pt`` with ``cozoo eval`` into ``eval_two`` and
extracts features with it into ``extract_two``.
"""

import shutil
import sys
from pathlib import Path

from cozoo import distributed
from cozoo.cli import main as cli
from cozoo.training import finetune, load_config

KILL_AFTER = 3


class Killed(Exception):
    pass


def kill(progress) -> None:
    if progress.global_step == KILL_AFTER:
        raise Killed(f"killed after step {KILL_AFTER}")


def main(tmp: Path) -> None:
    finetune(load_config(tmp / "two.yaml"))
    try:
        finetune(load_config(tmp / "killed.yaml"), on_step=kill)
    except Killed:
        pass
    if distributed.from_env().main:  # the other rank only reads last.pt until rank 0 joins the resumed run
        shutil.copytree(tmp / "killed", tmp / "killed_backup")
    finetune(load_config(tmp / "killed.yaml"), resume=True)
    data = tmp / "data"
    code = cli(["eval", "--model", "late_fusion", "--checkpoint", str(tmp / "two" / "last.pt"),
                "--annotations",
                str(data / "val.csv"), "--videos", str(data / "videos"), "--clips", "2", "--crops", "1",
                "--out", str(tmp / "eval_two")])
    code = code or cli(["extract", "--quiet", *extract_args(tmp), "--out", str(tmp / "extract_two")])
    sys.exit(code)


def extract_args(tmp: Path) -> list[str]:
    """`cozoo extract` of every generated video (train and validation) through the continual model."""
    return ["--model", "colate_fusion", "--checkpoint", str(tmp / "two" / "last.pt"), "--videos",
            str(tmp / "data" / "videos")]


if __name__ == "__main__":
    main(Path(sys.argv[1]))
