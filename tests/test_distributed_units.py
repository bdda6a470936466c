"""The single-process side of cozoo.distributed and the global-order sampler (no process group needed)."""

import pytest
import torch

from cozoo import distributed
from cozoo.training.data import ResumableSampler


def test_context_from_torchrun_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.from_env() == distributed.Context(0, 1, 0) and distributed.from_env().main
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    job = distributed.from_env()
    assert (job.rank, job.world_size, job.local_rank, job.enabled, job.main) == (3, 4, 1, True, False)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4 is outside WORLD_SIZE=4"):
        distributed.from_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK='x' is not an integer"):
        distributed.from_env()


def test_single_process_collectives_are_identities(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.device_for("cpu", distributed.from_env()) == torch.device("cpu")
    with distributed.session(torch.device("cpu")) as job:
        assert not job.enabled
        x = torch.arange(3.0)
        assert distributed.all_reduce(x) is x and x.tolist() == [0.0, 1.0, 2.0]
        assert distributed.gather_objects({"a": 1}) == [{"a": 1}]
        assert distributed.broadcast_object("x") == "x"
        distributed.barrier()


def test_shards_partition_the_items():
    items = list(range(10))
    shares = [distributed.shard(items, distributed.Context(r, 3)) for r in range(3)]
    assert sorted(sum(shares, [])) == items and shares[1] == [1, 4, 7]
    samplers = [distributed.ShardSampler(10, distributed.Context(r, 3)) for r in range(3)]
    assert [list(s) for s in samplers] == shares and [len(s) for s in samplers] == [4, 3, 3]


@pytest.mark.parametrize("world", [2, 4])
def test_rank_slices_of_each_global_batch_rebuild_the_one_process_order(world):
    one = ResumableSampler(22, seed=5, batch_size=8)
    ranks = [ResumableSampler(22, seed=5, batch_size=8, rank=r, world_size=world) for r in range(world)]
    for sampler in (one, *ranks):
        sampler.set_epoch(3, start=8)  # resumed after one global batch
    keys = list(one)
    assert len(keys) == 8 and len(one) == 8  # 14 left: one full batch, the partial one dropped
    assert keys == [(3, i) for i in one.order()[8:16]]
    share = 8 // world
    per_rank = [list(s) for s in ranks]
    assert all(len(s) == len(p) == share for s, p in zip(ranks, per_rank, strict=True))
    assert sum(per_rank, []) == keys  # rank r holds slice r of the global batch
    for sampler in (one, *ranks):
        sampler.set_epoch(0)
    keys, per_rank = list(one), [list(s) for s in ranks]
    assert len(keys) == 16  # two global batches
    assert [k for b in range(2) for p in per_rank for k in p[b * share:(b + 1) * share]] == keys
    with pytest.raises(ValueError, match="batch size 8 does not split evenly over 3 processes"):
        ResumableSampler(22, seed=5, batch_size=8, rank=0, world_size=3)
