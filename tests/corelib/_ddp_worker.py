"""A process of a 2-process gloo job for tests/corelib/test_ddp.py (spawned: importable)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from codec_lab.corelib.config import TrainConfig
from codec_lab.corelib.data import CropSampler, training_images
from codec_lab.corelib.training import Trainer
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import build_codec


def train(rank: int, world: int, port: int, config: dict[str, Any], out: str) -> None:
    """Train the config's codec twice in this process (once with ADMM's all-reduce disabled)
    and save this rank's ADMM state and first batch to ``out/rank{rank}.pt``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ["CODEC_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    torch.set_num_threads(1)
    from codec_lab.plugins.rates import admm

    saved: dict[str, Any] = {}
    for label in ("local", "reduced"):
        dist.init_process_group("gloo", rank=rank, world_size=world)
        real = admm.all_reduce_sum
        if label == "local":  # what a rate plugin that forgets the all-reduce would do
            admm.all_reduce_sum = lambda *v: v if len(v) > 1 else v[0]  # type: ignore[assignment]
        try:
            torch.manual_seed(0)
            codec = build_codec(config["model"], Registry())
            cfg = TrainConfig(**config["train"])
            sampler = CropSampler(training_images(config["data"]["train"]), cfg.crop, seed=cfg.seed)
            saved["first_batch"] = CropSampler(training_images(config["data"]["train"]), cfg.crop,
                                               seed=cfg.seed).batch(cfg.batch_size, (rank, world))
            result = Trainer(codec, cfg, sampler).run()
        finally:
            admm.all_reduce_sum = real
        rate = codec.rate
        saved[label] = {"template": rate.template.clone(), "Z": rate.Z.clone(), "U": rate.U.clone(),
                        "main": result.main, "losses": [r["loss"] for r in result.history],
                        "world_after": dist.is_initialized()}  # fmt: skip
    torch.save(saved, Path(out) / f"rank{rank}.pt")
