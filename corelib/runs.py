"""The run folder ``codec build`` writes and every other command reads.

::

    RUN/
      config.yaml         resolved config (rebuilds the same codec)
      weights.safetensors final weights and buffers (no pickled code: safe to load)
      run.json            components, weights digest, steps, timings
      train_log.csv       one row per epoch
      checkpoint.pt       the whole training state at the last checkpoint (tensors and plain
                          values only; weights_only load) — what `codec build --resume` needs
      coder_log.csv       a trained coder's stage: its loss per interval
      metrics.json        evaluation of the validation images (CompressAI results schema)
      report.md           a short human summary

``weights.safetensors`` is written last: a folder with ``config.yaml`` and no weights is a
build that was interrupted (:func:`run_state`), and every command says how to resume it.
"""

from __future__ import annotations

import json
import shlex
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.errors import RunError
from codec_lab.corelib.outputs import atomic_output

__all__ = ["RUN_FILES", "RUN_FOLDER_FILES", "RunState", "check_run_dir", "check_shapes",
           "config_matches", "interrupted_error", "load_weights", "read_config", "run_state", "save_weights",
           "weights_header", "write_json", "write_text"]  # fmt: skip

RUN_FILES = ("config.yaml", "weights.safetensors")
"""The files that make a folder a usable run."""

RUN_FOLDER_FILES = ("config.yaml", "weights.safetensors", "run.json", "train_log.csv", "checkpoint.pt",
                    "coder_log.csv", "coder_checkpoint.pt", "metrics.json", "report.md")  # fmt: skip
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


@dataclass
class RunState:
    """What a folder holds, as far as builds are concerned.

    Attributes:
        status: ``complete`` (config and weights), ``interrupted`` (a config, no weights: a
            build stopped before its end), or ``empty`` (no config).
        checkpoint: whether an interrupted build has a checkpoint to continue from.
        detail: where the build stopped, for messages (e.g. "at step 240 of 400").
    """

    status: str
    checkpoint: bool = False
    detail: str = ""


def run_state(path: str | Path) -> RunState:
    """Whether ``path`` holds a finished run, an interrupted build, or neither.

    Reading where a build stopped maps the checkpoint lazily (``mmap``): no tensor is read.
    """
    p = Path(path)
    if not (p / "config.yaml").is_file():
        return RunState("empty", detail="no config.yaml")
    if (p / "weights.safetensors").is_file():
        return RunState("complete")
    try:  # a build's config has these sections; another config.yaml is not a build
        cfg = yaml.safe_load((p / "config.yaml").read_text())
        ours = isinstance(cfg, dict) and isinstance(cfg.get("model"), dict) and "train" in cfg
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        ours = False
    if not ours:
        return RunState("empty", detail="its config.yaml is not a build's")
    ckpt = p / "checkpoint.pt"
    if not ckpt.is_file():
        return RunState("interrupted", False, "before its first checkpoint")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
        stage, loop = state.get("stage"), state.get("loop") or {}
        plan = state.get("plan") or {}
    except Exception:  # a damaged checkpoint is reported by the resume itself
        return RunState("interrupted", True, "with a damaged checkpoint")
    if stage == "train":
        detail = f"at step {loop.get('step', '?')} of {plan.get('total_steps', '?')}"
    elif stage == "fit":
        detail = "while fitting the entropy coder"
    elif stage == "fitted":
        detail = "after training, before its files were written"
    else:
        detail = "with a checkpoint of an older codec-lab build"
    return RunState("interrupted", True, detail)


def interrupted_error(p: Path, state: RunState) -> RunError:
    """The error every command gives for an interrupted build, with the resume command."""
    return RunError(f"{p} is an unfinished build: it stopped {state.detail}",
                    f"continue it with `codec build --resume {shlex.quote(str(p))}`")


_HEADER_LIMIT = 100 * 2**20  # safetensors refuses headers over 100 MB too


def weights_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``name -> (dtype, shape)`` of every tensor in a safetensors file, from its header alone
    (no tensor is read)."""
    try:
        with path.open("rb") as f:
            raw = f.read(8)
            (n,) = struct.unpack("<Q", raw) if len(raw) == 8 else (-1,)
            size = path.stat().st_size
            if not 2 <= n <= min(_HEADER_LIMIT, size - 8):
                raise RunError(f"{path} is damaged (its header length {n:,} does not fit the "
                               f"{size:,}-byte file)", "rebuild the run with `codec build`")  # fmt: skip
            meta = json.loads(f.read(n))
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is damaged (its header is not JSON)",
                       "rebuild the run with `codec build`") from e
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    if not isinstance(meta, dict):
        raise RunError(f"{path} is damaged (its header is not a table)", "rebuild the run with `codec build`")
    for name, entry in meta.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise RunError(f"{path} is damaged (tensor {name!r} has no valid shape)",
                           "rebuild the run with `codec build`")  # fmt: skip
        out[name] = (str(entry.get("dtype")), tuple(shape))
    return out


def check_shapes(run: Path, planned: dict[str, tuple[int, ...] | None]) -> None:
    """Refuse a run whose ``config.yaml`` describes other tensors than its weights hold,
    naming the first key that differs — before the codec is allocated.

    ``planned`` maps every state-dict key to its shape, or to None for a tensor whose size
    loading sets (entropy tables): only its presence is checked.
    """
    stored = weights_header(run / "weights.safetensors")
    for name, shape in planned.items():
        if name == "config_digest":
            continue
        if name not in stored:
            raise RunError(f"{run / 'config.yaml'} describes a tensor {name!r} that weights.safetensors "
                           "does not hold", _MODIFIED)  # fmt: skip
        if shape is not None and stored[name][1] != shape:
            raise RunError(
                f"{run / 'config.yaml'} does not fit weights.safetensors: {name} is "
                f"{'x'.join(map(str, shape)) or 'a scalar'} by the config, "
                f"{'x'.join(map(str, stored[name][1])) or 'a scalar'} in the weights", _MODIFIED)
    extra = sorted(set(stored) - set(planned))
    if extra:
        raise RunError(f"weights.safetensors holds {extra[0]!r}, which {run / 'config.yaml'} does not "
                       "describe", _MODIFIED)  # fmt: skip


_MODIFIED = "the run folder was modified: restore its config.yaml, or rebuild it with `codec build`"


def check_run_dir(path: str | Path) -> Path:
    """The run folder, or a clear error saying why ``path`` is not one (an interrupted
    build is named as such, with the command that continues it)."""
    p = Path(path)
    if not p.exists():
        raise RunError(f"model folder {p} does not exist", "pass the folder `codec build` wrote")
    if not p.is_dir():
        raise RunError(f"{p} is not a folder", "pass the run folder `codec build` wrote")
    state = run_state(p)
    if state.status == "interrupted":
        raise interrupted_error(p, state)
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


def run_record(run: Path) -> dict[str, Any]:
    """A run's ``run.json`` (versions, weights digest, timings); ``{}`` when it is missing or
    unreadable, for callers that treat such a run as not (yet) made."""
    try:
        doc = json.loads((run / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def config_matches(run: Path, config: dict[str, Any]) -> bool:
    """Whether ``run``'s ``config.yaml`` is ``config`` as YAML stores it (tuples become
    lists); False when it is missing or unreadable."""
    try:
        return read_config(run) == yaml.safe_load(yaml.safe_dump(dict(config), sort_keys=False))
    except RunError:
        return False


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
