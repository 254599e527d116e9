"""Distributed training on gloo with 2 CPU processes: the shards, the all-reduced statistics."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from codec_lab.corelib.data import CropSampler, training_images
from codec_lab.corelib.distributed import all_reduce_mean, all_reduce_sum, broadcast_object, world_size
from codec_lab.registry.components import Registry
from tests.conftest import tiny_config
from tests.corelib import _ddp_worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_single_process_helpers_are_identity() -> None:
    t = torch.arange(3.0)
    assert world_size() == 1
    assert all_reduce_sum(t) is t
    assert all_reduce_sum(t, 2) == (t, 2)
    assert all_reduce_mean([1.0, 2.0]) == [1.0, 2.0]
    assert broadcast_object({"a": 1}) == {"a": 1}


def test_shards_split_the_global_batch(data_dirs) -> None:
    """Every rank draws the same global batch and keeps its share; the shards together are
    exactly a single process's batch."""
    paths = training_images(str(data_dirs["train"]))
    whole = CropSampler(paths, 32, seed=3).batch(6)
    shards = [CropSampler(paths, 32, seed=3).batch(6, (r, 2)) for r in range(2)]
    assert torch.equal(shards[0], whole[0::2]) and torch.equal(shards[1], whole[1::2])
    # and the samplers stay in step after it: the next batches agree too
    a, b = CropSampler(paths, 32, seed=3), CropSampler(paths, 32, seed=3)
    a.batch(6, (0, 2))
    b.batch(6)
    assert torch.equal(a.batch(4), b.batch(4))


def test_admm_template_is_the_same_on_both_ranks(tmp_path: Path, data_dirs) -> None:
    """Two gloo processes train the tiny ADMM codec: the template, Z and U the all-reduced
    statistics decide are identical on both ranks (without the all-reduce they are not:
    each rank would project its own half of the data)."""
    cfg = tiny_config(Registry(), {"train": str(data_dirs["train"]), "val": str(data_dirs["val"])})
    cfg["train"].update(steps=6, steps_per_epoch=2, batch_size=4)
    # finetune 0: the last ADMM step is at the end of the last epoch, after the last forward
    # (whose buffer broadcast would otherwise hand rank 0's template to rank 1 anyway)
    cfg["model"]["rate"].update(every=1, keep=0.3, finetune=0.0)
    mp.spawn(_ddp_worker.train, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert not torch.equal(r0["first_batch"], r1["first_batch"])  # the ranks saw different data
    assert r0["reduced"]["main"] and not r1["reduced"]["main"]
    assert not r0["reduced"]["world_after"]  # the group is left after training
    for key in ("template", "Z", "U"):
        assert torch.equal(r0["reduced"][key], r1["reduced"][key]), key
    assert r0["reduced"]["template"].float().mean() == pytest.approx(0.3, abs=0.05)
    # The check can fail: from local statistics the ranks project different templates.
    assert not all(torch.equal(r0["local"][k], r1["local"][k]) for k in ("Z", "U"))
    # rank 0 logs the losses averaged over the ranks: both hold the same history
    assert r0["reduced"]["losses"] == r1["reduced"]["losses"]
