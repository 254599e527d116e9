"""The run folder ``codec build`` writes and every other command reads.

::

    RUN/
      config.yaml         resolved config (rebuilds the same codec)
      weights.safetensors final weights and buffers (no pickled code: safe to load)
      run.json            components, weights digest, steps, timings
      train_log.csv       one row per epoch
      checkpoint.pt       last epoch's training state (tensors only; weights_only load)
      metrics.json        evaluation of the validation images (CompressAI results schema)
      report.md           a short human summary
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.errors import RunError
from codec_lab.corelib.outputs import atomic_output

__all__ = ["RUN_FILES", "RUN_FOLDER_FILES", "check_run_dir", "load_weights", "read_config", "save_weights",
           "write_json", "write_text"]  # fmt: skip

RUN_FILES = ("config.yaml", "weights.safetensors")
"""The files that make a folder a usable run."""

RUN_FOLDER_FILES = ("config.yaml", "weights.safetensors", "run.json", "train_log.csv", "checkpoint.pt",
                    "metrics.json", "report.md")  # fmt: skip
"""Every file ``codec build`` writes into a run folder (``--force`` replaces only these)."""


def save_weights(codec: Codec, path: Path, *, overwrite: bool = False) -> None:
    """Write the codec's state dict as safetensors, atomically."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in codec.state_dict().items()}
    with atomic_output(path, overwrite=overwrite) as tmp:
        save_file(state, str(tmp))


def load_weights(codec: Codec, path: Path) -> None:
    """Load safetensors weights into ``codec`` (strict: every key must match)."""
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise RunError(f"{path} is damaged: {e}", "rebuild the run with `codec build`") from e
    try:
        codec.load_state_dict(state, strict=True, check_config=False)  # config.yaml is the run's own
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise RunError(f"{path} does not fit the codec in config.yaml ({first})",
                       "the run folder was modified; rebuild it with `codec build`") from e


def check_run_dir(path: str | Path) -> Path:
    """The run folder, or a clear error saying why ``path`` is not one."""
    p = Path(path)
    if not p.exists():
        raise RunError(f"model folder {p} does not exist", "pass the folder `codec build` wrote")
    if not p.is_dir():
        raise RunError(f"{p} is not a folder", "pass the run folder `codec build` wrote")
    missing = [f for f in RUN_FILES if not (p / f).is_file()]
    if missing:
        raise RunError(f"{p} is not a codec run (missing {', '.join(missing)})",
                       "pass the folder `codec build` wrote, e.g. runs/admm1")
    return p


def read_config(run: Path) -> dict[str, Any]:
    """The resolved config of a run."""
    try:
        cfg = yaml.safe_load((run / "config.yaml").read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RunError(f"{run / 'config.yaml'} is unreadable: {e}") from e
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise RunError(f"{run / 'config.yaml'} has no model section",
                       "the run folder was modified; rebuild it with `codec build`")
    return cfg


def write_text(path: Path, text: str, *, overwrite: bool = False) -> None:
    """Write text atomically (an existing file only with ``overwrite``)."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj: Any, *, overwrite: bool = False) -> None:
    """Write JSON (indented) atomically (an existing file only with ``overwrite``)."""
    write_text(path, json.dumps(obj, indent=2, default=float) + "\n", overwrite=overwrite)


def torch_load_checkpoint(path: Path) -> dict[str, Any]:
    """Load ``checkpoint.pt`` without unpickling code (``weights_only``)."""
    return torch.load(path, map_location="cpu", weights_only=True)
