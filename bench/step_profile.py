"""Seconds per training step of a composed codec at several batch sizes, and where they go.

    python bench/step_profile.py --rate admm --preset paper [--batches 8 32 128] [--device cuda]

Runs the training engine's step (forward, distortion + rate loss, backward, Adam) on random
128×128 crops and prints a table; with ``--profile`` also the top operators by self time and
the number of kernel launches per step (a launch-bound GPU step costs the same at any batch).
"""

from __future__ import annotations

import argparse
import time

import torch

from codec_lab.corelib.losses import distortion_loss
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", default="admm")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--set", action="append", default=[], help="key=value (model.* only)")
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its algorithms")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    device = torch.device(args.device)
    sets: dict = {}
    for item in args.set:
        key, value = item.split("=", 1)
        node = sets
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = int(value) if value.isdigit() else {"false": False, "true": True}.get(value, value)
    reg = Registry()
    cfg = assemble_config(reg, rate=args.rate, preset=args.preset, sets=sets)
    codec = build_codec(cfg["model"], reg).to(device).train()
    loss_fn = distortion_loss(cfg["train"]["loss"], 128)
    opt = torch.optim.Adam(codec.parameters(), lr=1e-4)

    def step(x: torch.Tensor) -> None:
        out = codec(x)
        loss = loss_fn(x, out["x_hat"]) + out["rate_loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
        opt.step()

    print(f"{args.rate} / {args.preset} on {device} "
          f"({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), torch {torch.__version__}")
    print(f"{'batch':>6} {'s/step':>8} {'img/s':>8}")
    for b in args.batches:
        x = torch.rand(b, 3, 128, 128, device=device)
        step(x)
        step(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step(x)
        _sync(device)
        dt = (time.perf_counter() - t0) / args.steps
        print(f"{b:>6} {dt:>8.3f} {b / dt:>8.1f}", flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        x = torch.rand(args.batches[0], 3, 128, 128, device=device)
        with profile(activities=acts) as prof:
            for _ in range(2):
                step(x)
            _sync(device)
        avg = prof.key_averages()
        names = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC")
        launches = sum(e.count for e in avg if e.key in names)
        print(f"kernel launches per step: {launches / 2:.0f}")
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(avg.table(sort_by=key, row_limit=12, max_name_column_width=40))
        print(avg.table(sort_by="self_cpu_time_total", row_limit=8, max_name_column_width=40))


if __name__ == "__main__":
    main()
