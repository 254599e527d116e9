"""Where the networks run: the device and the CPU thread count."""

from __future__ import annotations

import os

import torch

from codec_lab.corelib.errors import ConfigError, did_you_mean

__all__ = ["DEVICES", "cpu_busy", "resolve_device", "set_threads"]

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu; ``cuda`` without a GPU is refused."""
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r}", did_you_mean(name, DEVICES))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA device is available",
                          "use --device cpu or auto")  # fmt: skip
    return torch.device(name)


def set_threads(n: int) -> None:
    """Run torch's CPU kernels on ``n`` threads (intra-op; inter-op too while it can be set).

    On a machine shared with another torch job, fewer threads than cores avoids
    oversubscription: measured on 2 cores beside another training job, a ``cpu``-preset
    step took 9.2 s with torch's default threads and 2.5 s with one (``python -m bench.threads``).
    """
    if n < 1:
        raise ConfigError(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # only settable before the first parallel work; intra-op is what counts
        pass


def cpu_busy() -> tuple[float, int] | None:
    """``(load, cores)`` when other work already keeps every core busy, else None.

    Uses the 1-minute load average, so it reflects other processes, not this one's start.
    """
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return (load, cores) if load >= cores - 0.25 else None
