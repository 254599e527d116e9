"""Distributed training against one process on the same global batch: time per step and the
loss curve (`codec build` in subprocesses, as a user runs it).

    python -m bench.ddp [--rate importance] [--steps 30] [--batch 8] [--crop 96] [--nproc 2]

For each process count (1, then ``--nproc``) it trains the same build from scratch and reads
``train_log.csv`` (one epoch per step) and ``run.json``: seconds per training step (after the
first, which pays for start-up) and the largest relative difference of a step's loss from the
single process's. ``importance`` codes with a deterministic quantizer, so its curves agree to
float rounding; with a noise quantizer they agree only statistically.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._common import machine, print_table


def _build(out: Path, nproc: int, args: argparse.Namespace) -> tuple[list[dict[str, str]], float]:
    cmd = [sys.executable, "-m", "codec_lab.cli", "build", "--rate", args.rate, "--steps", str(args.steps),
           "--set", "train.steps_per_epoch=1", "--set", f"train.batch_size={args.batch}",
           "--set", f"train.crop={args.crop}", "--set", "train.device=cpu", "--out", str(out)]  # fmt: skip
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc))}
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    with open(out / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, float(json.loads((out / "run.json").read_text())["train_seconds"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", default="importance")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8, help="global batch")
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--nproc", type=int, default=2)
    args = ap.parse_args(argv)
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        base: list[float] = []
        for n in (1, args.nproc):
            rows, seconds = _build(Path(tmp) / f"p{n}", n, args)
            losses = [float(r["loss"]) for r in rows]
            base = base or losses
            stamps = [float(r["seconds"]) for r in rows]
            per_step = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
            diff = max(abs(a - b) / abs(b) for a, b in zip(losses, base, strict=True))
            table.append([n, f"{args.batch // n}", len(losses), f"{per_step:.3f}", f"{seconds:.1f}",
                          f"{diff:.1e}", f"{losses[-1]:.2f}"])  # fmt: skip
    print(f"machine: {machine()}; {args.rate}, global batch {args.batch} × {args.crop}², "
          f"{args.steps} steps, cores split evenly between the processes")
    print_table("DDP (gloo) against one process", ["processes", "batch / process", "steps",
                "s / step", "train s", "max |Δloss| / loss", "last loss"], table)  # fmt: skip


if __name__ == "__main__":
    main()
