"""Training checkpoints: everything a build needs to continue as if never stopped.

``checkpoint.pt`` in a run folder holds the model, every optimizer and scheduler, the rate
plugin's training state, the loop's position (epoch, step inside it, running sums, the plan
a time limit shortened), the random states of torch, NumPy, Python and the crop sampler, and
the stage: ``train`` (transform training), ``fit`` (the coder-fitting stage, with its own
optimizer and position) or ``fitted`` (everything trained; what is left is evaluation and
writing the run's files). It is written atomically (temporary file, fsync, rename) and loaded
with ``weights_only``: loading one never executes code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec_lab.corelib.errors import RunError
from codec_lab.corelib.outputs import atomic_output

__all__ = [
    "CHECKPOINT",
    "CHECKPOINT_FORMAT",
    "STAGES",
    "capture_rng",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
]

CHECKPOINT = "checkpoint.pt"
"""The checkpoint's file name in a run folder."""

CHECKPOINT_FORMAT = 2
"""Version of the checkpoint's layout (1: model, optimizer, scheduler and epoch only)."""

STAGES = ("train", "fit", "fitted")
"""Where a checkpointed build stands: training, fitting the coder, or done training."""


def capture_rng(device: torch.device | None = None) -> dict[str, Any]:
    """The random states of Python, NumPy, torch (and CUDA when ``device`` is a GPU), in a
    form ``weights_only`` loading accepts (tensors, numbers, strings, lists)."""
    name, key, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(np.asarray(key, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)],  # fmt: skip
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the random states :func:`capture_rng` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically (temporary file, fsync, rename), replacing the last one."""
    if state.get("stage") not in STAGES:
        raise ValueError(f"checkpoint stage must be one of {STAGES}, got {state.get('stage')!r}")
    with atomic_output(path, overwrite=True) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint without unpickling code; a clear error if it cannot continue a build."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise RunError(f"{path} does not exist: the build stopped before its first checkpoint",
                       "start it again with `codec build … --force`") from e
    except Exception as e:  # torch raises pickle and zip errors of several types
        raise RunError(f"{path} is damaged ({type(e).__name__}: {str(e).splitlines()[0][:120]})",
                       "start the build again with `codec build … --force`") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        got = state.get("format", 1) if isinstance(state, dict) else "?"
        raise RunError(f"{path} has checkpoint format {got}; this build resumes format "
                       f"{CHECKPOINT_FORMAT} only",
                       "start the build again with `codec build … --force`")  # fmt: skip
    if state.get("stage") not in STAGES:
        raise RunError(f"{path} names an unknown stage {state.get('stage')!r}",
                       "start the build again with `codec build … --force`")  # fmt: skip
    return state
