"""Run folders: build → train → save, and load a run back into a ``Codec``."""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file

import codec_lab
from codec_lab.corelib.checkpoint import CHECKPOINT, load_checkpoint
from codec_lab.corelib.codec import Codec
from codec_lab.corelib.config import TrainConfig
from codec_lab.corelib.data import CropSampler, training_images, validation_images
from codec_lab.corelib.distributed import is_main
from codec_lab.corelib.errors import ConfigError, OutputError, RunError
from codec_lab.corelib.evaluation import evaluate
from codec_lab.corelib.progress import Progress
from codec_lab.corelib.render import markdown_table
from codec_lab.corelib.results import Results
from codec_lab.corelib.runs import (
    RUN_FOLDER_FILES,
    RunState,
    check_run_dir,
    check_shapes,
    load_weights,
    read_config,
    run_state,
    save_weights,
    write_json,
    write_text,
)
from codec_lab.corelib.training import Trainer, TrainResult
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import build_codec, planned_shapes, smoke_test
from codec_lab.registry.shipped_models import resolve

__all__ = ["check_resumable", "check_run_dir_free", "describe", "init_weights", "load_run",
           "prepare_run_dir", "resume_run", "run_info", "train_run"]


def load_run(path: str | Path, registry: Registry | None = None) -> Codec:
    """Rebuild the codec of a run folder and load its weights (eval mode)."""
    run = check_run_dir(path)
    model = read_config(run)["model"]
    planned = planned_shapes(model, registry)
    if planned is not None:  # config against the weights' header, before anything is allocated
        check_shapes(run, planned)
    codec = build_codec(model, registry)
    load_weights(codec, run / "weights.safetensors")
    return codec.eval()


def init_weights(codec: Codec, source: str, preset: str | None = None) -> dict[str, Any]:
    """Load the weights ``train.init`` names into ``codec``, to fine-tune them.

    ``source`` is a run folder or a shipped model's name (:func:`resolve`): a finished run's
    ``weights.safetensors``, or an unfinished build's last checkpoint. The layers and shapes
    must be this codec's; the configuration may differ (another rate weight is the point).
    ``preset``: this build's, named in the error when the source was built with another.

    Returns:
        What was loaded, for ``run.json``: the source, its weights digest and, from a
        checkpoint, the step it was written at.

    Raises:
        ConfigError: nothing to load there, or weights of another architecture.
    """
    where = resolve(source, option="train.init")
    run = where.path
    state = run_state(run)
    facts: dict[str, Any] = {"from": where.label}
    if state.status == "complete":
        try:
            tensors = load_file(str(run / "weights.safetensors"))
        except Exception as e:  # safetensors raises its own error types
            raise ConfigError(f"train.init: {run / 'weights.safetensors'} is damaged: {e}",
                              "pass another run, or rebuild that one") from e  # fmt: skip
    elif state.status == "interrupted" and state.checkpoint:
        ckpt = load_checkpoint(run / CHECKPOINT)  # a damaged one: its own clear error
        tensors = ckpt["model"]
        facts["step"] = int(ckpt["step"])
    else:
        raise ConfigError(f"train.init: {run} has no weights to start from ({state.detail or state.status})",
                          "pass a run folder from `codec build` (finished, or with a checkpoint) "
                          "or a shipped model's name (`codec models`)")  # fmt: skip
    try:
        codec.load_state_dict(tensors, strict=True, check_config=False)
    except RuntimeError as e:
        theirs = (read_config(run).get("preset") if (run / "config.yaml").is_file() else None)
        hint = (f"{where.label} was built with --preset {theirs}, this build uses {preset}: pass "
                f"--preset {theirs}" if theirs and preset and theirs != preset else
                "start from a run with the same encoder, decoder, quantizer, rate and coder "
                "plugins and sizes (only settings such as the rate weight may differ)")  # fmt: skip
        raise ConfigError(f"train.init: the weights of {where.label} do not fit this codec "
                          f"({_misfit(codec.state_dict(), tensors)})", hint) from e
    facts["weights_digest"] = codec.weights_digest()
    return facts


def _misfit(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> str:
    """How two state dicts differ, in a line: counts and one example of each difference."""
    skip = {"config_digest"}
    missing = sorted(set(ours) - set(theirs) - skip)
    extra = sorted(set(theirs) - set(ours) - skip)
    shaped = sorted(k for k in set(ours) & set(theirs) - skip
                    if tuple(ours[k].shape) != tuple(theirs[k].shape))  # fmt: skip
    parts = []
    if shaped:
        k = shaped[0]
        parts.append(f"{len(shaped)} tensor(s) of another shape, e.g. {k}: {tuple(theirs[k].shape)} "
                     f"there, {tuple(ours[k].shape)} here")
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} not in this codec, e.g. {extra[0]}")
    return "; ".join(parts) or "the tensors differ"


def describe(codec: Codec, patch: int = 128) -> dict[str, Any]:
    """Components, parameter counts and latent shape per ``patch``² input (for --dry-run)."""
    with torch.no_grad():
        codec.eval()
        y = codec.encoder(torch.zeros(1, 3, patch, patch))["y"]
    return {
        "components": {
            k: {"name": type(c).name, "version": type(c).version,
                "parameters": sum(p.numel() for p in c.parameters())}
            for k, c in codec.parts.items()
        },  # fmt: skip
        "parameters": sum(p.numel() for p in codec.parameters()),
        "latent_shape": list(y.shape[1:]),
        "patch": patch,
        "streams": [
            {"name": s.name, "channels": s.channels, "alphabet": s.alphabet} for s in codec.specs
        ],
        "symbols_per_pixel": y[0].numel() / patch**2,
    }


def check_run_dir_free(out: Path, overwrite: bool = False) -> list[Path]:
    """Refuse ``out`` as a new run folder with what to do instead, or return the files that
    ``overwrite`` would remove (nothing is touched: a launcher checks before it starts)."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"cannot create run folder {out}: a file is there",
                          "choose another --out")
    if not out.exists():
        return []
    entries = list(out.iterdir())
    if entries and not overwrite:
        raise OutputError(f"run folder {out} already exists and is not empty",
                          "pass --force to replace the run in it, or choose another --out")
    # Leftover temporary files of an interrupted write are part of a run folder too.
    foreign = sorted(e.name for e in entries if not (
        e.name in RUN_FOLDER_FILES or (e.name.startswith(".") and e.name.endswith(".part"))))
    if foreign:
        raise OutputError(
            f"--force replaces only run folders, and {out} also holds {', '.join(foreign[:3])}"
            + (" …" if len(foreign) > 3 else ""),
            "choose another --out (nothing was deleted)",
        )
    return entries


def prepare_run_dir(out: Path, overwrite: bool = False) -> None:
    """Create the run folder ``out``, or refuse it with what to do instead.

    An existing non-empty folder is refused unless ``overwrite``; even then only a run
    folder is replaced (its known files removed), never a folder holding anything else.
    """
    for e in check_run_dir_free(out, overwrite):
        e.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create run folder {out}: {e.strerror}",
                          "choose a writable --out") from e


def _report(config: dict[str, Any], codec: Codec, result: TrainResult, ev: Results) -> str:
    info = describe(codec)
    lines = ["# codec-lab run", "", f"Created {_dt.datetime.now().isoformat(timespec='seconds')}, "
             f"preset `{config['preset']}`, {result.steps} steps in {result.epochs} epochs, "
             f"{result.seconds:.0f} s training + {result.fit_seconds:.0f} s coder fit "
             f"({result.fit_images} image(s)).", "",
             "| kind | component | parameters |", "|---|---|---|"]  # fmt: skip
    for kind, c in info["components"].items():
        lines.append(f"| {kind} | {c['name']} {c['version']} | {c['parameters']:,} |")
    lines += ["", f"Latent per {info['patch']}² patch: {info['latent_shape']} "
              f"({info['symbols_per_pixel']:.3f} symbols/pixel).", ""]  # fmt: skip
    extra = codec.rate.extra_state_info()
    if extra:
        lines += ["Rate plugin: " + ", ".join(f"{k}={v}" for k, v in extra.items()), ""]
    if result.history:
        last = result.history[-1]
        lines += [f"Last epoch: loss {last.get('loss', 0):.2f}, estimated bpp "
                  f"{last.get('est_bpp', 0):.3f}, PSNR {last.get('psnr', 0):.2f} dB.", ""]
    if ev.rows:
        # The columns come from the results' codec description (streams, the rate's declared
        # report columns): the report knows no rate.
        streams = ("; stream columns are each stream's payload, the rest of a file is its header"
                   if len(ev.codec.streams) > 1 else "")
        lines += [f"Validation (real files; bpp = bytes × 8 / pixels{streams}; est. bpp is the "
                  "model's likelihood estimate):", "", markdown_table(ev)]  # fmt: skip
    return "\n".join(lines) + "\n"


def run_info(codec: Codec, **facts: Any) -> dict[str, Any]:
    """``run.json``: the versions and components that made a run, its weights digest, ``facts``."""
    return {
        "codec_lab": codec_lab.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "components": {k: {"name": n, "version": v} for k, (n, v) in codec.components().items()},
        "weights_digest": codec.weights_digest(),
        **facts,
    }


def train_run(
    config: dict[str, Any],
    out: Path,
    registry: Registry | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> tuple[Codec, TrainResult, Results]:
    """Build the codec ``config`` describes, train it, and write the run folder ``out``.

    The composition is first smoke-tested on a tiny image (:func:`smoke_test`), so that a
    broken component fails before the run folder is created.

    ``overwrite`` replaces an earlier run in ``out`` (see :func:`prepare_run_dir`). The run
    checkpoints as it goes (``checkpoint.pt``); an interrupted one continues with
    :func:`resume_run`. ``weights.safetensors`` is written last: a folder without it is an
    unfinished build.
    """
    registry = registry or Registry()
    train_cfg = TrainConfig(**config["train"])
    # A component that breaks its contract fails now, before any data is read, any run
    # folder exists or any step is trained.
    smoke_test(config["model"], registry)
    def prepare() -> None:  # once the data is read: a bad data folder leaves no run folder
        prepare_run_dir(out, overwrite)
        write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    return _execute(config, train_cfg, out, registry, progress, None, prepare)


def resume_run(
    out: Path,
    registry: Registry | None = None,
    progress: Progress | None = None,
    device: str | None = None,
) -> tuple[Codec, TrainResult, Results]:
    """Continue the interrupted build in run folder ``out`` from its last checkpoint.

    With the same machine and thread count, the final weights equal those an uninterrupted
    run reaches. A build that stopped before its first checkpoint starts over from its
    ``config.yaml``.

    Args:
        device: run on another device than the config's (the result may then differ in the
            last bits from an uninterrupted run).
    """
    state = check_resumable(out)
    registry = registry or Registry()
    config = read_config(out)
    train = dict(config.get("train") or {})
    if device is not None:
        train["device"] = device
    try:
        train_cfg = TrainConfig(**train)
        train_cfg.check()
    except TypeError as e:
        raise RunError(f"{out / 'config.yaml'} has an unknown train key ({e})",
                       "the run folder was modified; start the build again with --force") from e
    ckpt = load_checkpoint(out / CHECKPOINT) if state.checkpoint else None

    def tidy() -> None:  # temporary files of writes the kill interrupted
        for part in out.glob(".*.part"):
            part.unlink(missing_ok=True)

    return _execute(config, train_cfg, out, registry, progress, ckpt, tidy)


def check_resumable(out: Path) -> RunState:
    """Where the interrupted build in ``out`` stands, or why there is none to resume."""
    if not out.is_dir():
        raise RunError(f"{out} is not a folder", "pass the run folder of the interrupted build")
    state = run_state(out)
    if state.status == "complete":
        raise RunError(f"{out} is a complete run; there is nothing to resume",
                       "use it (`codec eval --model …`), or train a new one")  # fmt: skip
    if state.status == "empty":
        raise RunError(f"{out} holds no build to resume ({state.detail})",
                       "start one with `codec build … --out` that folder")  # fmt: skip
    return state


def _execute(
    config: dict[str, Any],
    train_cfg: TrainConfig,
    out: Path,
    registry: Registry,
    progress: Progress | None,
    ckpt: dict[str, Any] | None,
    prepare: Callable[[], None],
) -> tuple[Codec, TrainResult, Results]:
    """Train (or continue training) the codec of ``config`` in ``out`` and write the run."""
    torch.manual_seed(train_cfg.seed)  # the initial weights are part of what the seed reproduces
    codec = build_codec(config["model"], registry)
    # A resumed build's checkpoint holds its weights (and the record of its start).
    notes = ({"init": init_weights(codec, train_cfg.init, config.get("preset"))}
             if train_cfg.init and ckpt is None else {})  # fmt: skip
    if progress is not None and "init" in notes:
        step = notes["init"].get("step")
        progress.message(f"starting from the weights of {notes['init']['from']}"
                         f"{f' (its checkpoint at step {step})' if step is not None else ''}, "
                         f"digest {notes['init']['weights_digest']}")  # fmt: skip
    data = config["data"]
    train_paths = training_images(data["train"])
    val_paths = validation_images(data["val"])
    sampler = CropSampler(train_paths, train_cfg.crop, seed=train_cfg.seed)
    if is_main():  # in a distributed build rank 0 owns the run folder
        prepare()
    trainer = Trainer(codec, train_cfg, sampler, fit_images=train_paths, run_dir=out,
                      progress=progress, notes=notes)  # fmt: skip
    result = trainer.run(resume=ckpt)
    if not result.main:  # another process of a distributed build: rank 0 evaluates and saves
        return codec, result, Results()
    codec = codec.cpu().eval()
    ev = evaluate(codec, val_paths, progress)
    name = f"{config['model']['encoder']['name']}+{config['model']['rate']['name']}"
    # The same results model as `codec eval --json`: CompressAI's schema, rows, codec description.
    # overwrite: a resumed run replaces what its interrupted process may have written.
    write_json(out / "metrics.json", ev.to_compressai(
        name, f"codec-lab {name} ({config['preset']}), real files on {len(val_paths)} "
        f"validation image(s)"), overwrite=True)  # fmt: skip
    write_json(out / "run.json", run_info(
        codec,
        steps=result.steps,
        epochs=result.epochs,
        train_seconds=round(result.seconds, 2),
        fit_seconds=round(result.fit_seconds, 2),
        fit_images=result.fit_images,
        fit_steps=result.fit_steps,
        train_images=len(train_paths),
        rate=codec.rate.extra_state_info(),
        **result.notes,
    ), overwrite=True)
    write_text(out / "report.md", _report(config, codec, result, ev), overwrite=True)
    # Last: a folder with weights is a finished run (`check_run_dir`), one without is resumable.
    save_weights(codec, out / "weights.safetensors", overwrite=True)
    return codec, result, ev
