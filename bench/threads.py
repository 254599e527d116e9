"""Seconds per training step beside another torch job, by thread count (the ``--threads`` advice).

A background process runs the same training steps on torch's default thread count, as a
second training job would; this process then times training steps of the ``cpu``-preset
codec (``mix`` loss, batch 8 of 128² crops) at each thread count asked for. The same steps
on an idle machine are the reference, measured first in the same run.

    .venv/bin/python -m bench.threads --threads 0 --threads 1   # from the repository root; 0 = default
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch
from rich.table import Table

from bench._common import console, machine
from codec_lab.corelib.config import TrainConfig
from codec_lab.corelib.losses import distortion_loss
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec


def _load(stop: mp.Event, rate: str) -> None:  # type: ignore[valid-type]
    """Another training job: the same steps in a loop, on torch's default threads."""
    while not stop.is_set():
        _steps(0, 1, rate)


def _steps(threads: int, n: int, rate: str) -> float:
    torch.set_num_threads(threads or DEFAULT_THREADS)
    reg = Registry()
    cfg = assemble_config(reg, rate=rate, preset="cpu")
    train = TrainConfig(**cfg["train"])
    torch.manual_seed(0)
    codec = build_codec(cfg["model"], reg).train()
    opt = torch.optim.Adam(codec.parameters(), lr=1e-4)
    loss_fn = distortion_loss(train.loss, train.crop)
    x = torch.rand(train.batch_size, 3, train.crop, train.crop)
    times = []
    for _ in range(n + 1):  # the first step pays for allocations
        t0 = time.perf_counter()
        out = codec(x)
        loss = loss_fn(x, out["x_hat"]) + out["rate_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / n


DEFAULT_THREADS = torch.get_num_threads()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, action="append", help="thread counts (0: torch's default)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rate", default="admm")
    args = ap.parse_args()
    counts = args.threads or [0, 1]
    where = machine()
    rows = []
    for n in counts:
        rows.append(("idle", n, _steps(n, args.steps, args.rate)))
    ctx = mp.get_context("spawn")  # a forked child of a process that ran OpenMP may hang
    stop = ctx.Event()
    bg = ctx.Process(target=_load, args=(stop, args.rate), daemon=True)
    bg.start()
    time.sleep(15)  # until the other job is past its start-up
    try:
        for n in counts:
            rows.append(("beside another torch job", n, _steps(n, args.steps, args.rate)))
    finally:
        stop.set()
        bg.join(10)
    table = Table(title=f"training step, {args.rate} --preset cpu, batch 8 × 128² ({where})")
    for col in ("machine", "threads", "s / step", "vs idle, same threads"):
        table.add_column(col, justify="left" if col == "machine" else "right")
    idle = {n: s for place, n, s in rows if place == "idle"}
    for place, n, s in rows:
        label = f"{n}" if n else f"default ({DEFAULT_THREADS})"
        table.add_row(place, label, f"{s:.3f}", f"{s / idle[n]:.2f}×")
    console.print(table)


if __name__ == "__main__":
    main()
