"""Refit or swap the entropy coder of a trained run, keeping its transform's weights.

``codec fit-coder --model RUN [--coder NAME] [--data DIR] [--out RUN2]``: the new run folder
holds the same encoder, quantizer, rate and decoder weights (byte for byte), and a coder
fitted on the training images the way it declares (counted, trained, or nothing to fit).
The original run is never modified.
"""

from __future__ import annotations

import copy
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.coder_fit import CoderFit, CoderFitter
from codec_lab.corelib.config import TrainConfig, deep_merge, validate_sections
from codec_lab.corelib.data import training_images, validation_images
from codec_lab.corelib.errors import ConfigError, DataError, OutputError, RunError
from codec_lab.corelib.evaluation import evaluate
from codec_lab.corelib.progress import Progress
from codec_lab.corelib.render import markdown_table
from codec_lab.corelib.results import Results
from codec_lab.corelib.runs import (
    check_run_dir,
    load_weights,
    read_config,
    run_record,
    save_weights,
    write_json,
    write_text,
)
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import build_codec, resolve_model
from codec_lab.registry.runs import prepare_run_dir, run_info

__all__ = ["RefitResult", "default_out", "refit_run"]


@dataclass
class RefitResult:
    """What ``refit_run`` made."""

    out: Path
    codec: Codec
    fit: CoderFit
    evaluation: Results
    config: dict[str, Any]


def default_out(run: Path, coder: str) -> Path:
    """``runs/admm1`` refitted with ``histogram`` → ``runs/admm1-histogram``."""
    return run.with_name(f"{run.name}-{coder}")


def _new_config(config: dict[str, Any], coder: str | None, data: Path | None, val: Path | None,
                sets: dict[str, Any], registry: Registry) -> dict[str, Any]:  # fmt: skip
    cfg = copy.deepcopy(config)
    model = cfg["model"]
    if coder is not None:
        # A swapped coder starts from its own defaults, sized by the run's preset (a `cpu`
        # run gets the coder's `cpu` network), as `codec build --preset` would have.
        preset = cfg.get("preset")
        sized = registry.get("coder", coder).cls.presets.get(preset, {}) if isinstance(preset, str) else {}
        model["coder"] = {"name": coder, **sized}
    over_model = sets.get("model") or {}
    for kind in over_model:
        if kind != "coder":
            raise ConfigError(f"--set model.{kind}…: fit-coder changes only the coder",
                              "rebuild the run with `codec build` to change other parts")  # fmt: skip
    if isinstance(over_model.get("coder"), dict):
        model["coder"] = {**model["coder"], **over_model["coder"]}
    for key in sets:
        if key not in ("model", "train"):
            raise ConfigError(f"--set {key}…: fit-coder takes model.coder.* and train.* keys")
    cfg["train"] = deep_merge(cfg.get("train") or {}, sets.get("train") or {})
    cfg["train"]["fit_coder"] = True
    if data is not None:
        cfg.setdefault("data", {})["train"] = str(data)
    if val is not None:
        cfg.setdefault("data", {})["val"] = str(val)
    cfg["model"] = resolve_model(model, registry)
    validate_sections({k: v for k, v in cfg.items() if k in ("train", "data")})
    return cfg


def _transfer_transform(src: Codec, dst: Codec) -> None:
    """Copy every weight except the coder's, strictly (any other mismatch is an error)."""
    theirs = {k: v for k, v in src.state_dict().items() if not k.startswith("coder.")}
    ours = {k for k in dst.state_dict() if not k.startswith("coder.")}
    if set(theirs) != ours:
        missing = sorted(ours - set(theirs))[:3]
        raise RunError(f"the run's transform does not fit the new codec (missing {missing})",
                       "the coder must not change the other parts; rebuild with `codec build`")  # fmt: skip
    state = {**theirs, **{k: v for k, v in dst.state_dict().items() if k.startswith("coder.")}}
    dst.load_state_dict(state, strict=True, check_config=False)


def _check_recorded_folder(src_dir: Path, config: dict[str, Any], key: str, given: Path | None,
                           flag: str) -> None:
    """Refuse, before any work, a default image folder (the one the run recorded, relative to
    where it was built) that is not here: the user never typed that path."""
    recorded = (config.get("data") or {}).get(key)
    if given is None and recorded and not Path(recorded).is_dir():
        what, use = ("trained", "fit the coder on") if key == "train" else ("validated", "evaluate on")
        raise DataError(f"{src_dir} was {what} on {recorded} (recorded in its config.yaml), which is not "
                        f"a folder here", f"pass the images to {use} with {flag} DIR")  # fmt: skip


def refit_run(
    run: str | Path,
    *,
    coder: str | None = None,
    data: Path | None = None,
    val: Path | None = None,
    out: Path | None = None,
    sets: dict[str, Any] | None = None,
    registry: Registry | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
    device: torch.device | str = "cpu",
) -> RefitResult:
    """Fit (or swap, with ``coder``) a trained run's entropy coder into a new run folder.

    Args:
        run: the trained run folder (read only).
        coder: a coder to use instead of the run's (its defaults, then ``sets``).
        data: training images to fit on (default: the run's ``data.train``).
        val: images to evaluate the new run on (default: the run's ``data.val``).
        out: the new run folder (default: ``RUN-CODER`` beside the run).
        sets: ``--set`` overrides, ``model.coder.*`` and ``train.*`` only.
        overwrite: replace an earlier run in ``out``.
    """
    registry = registry or Registry()
    src_dir = check_run_dir(run)
    config = read_config(src_dir)
    cfg = _new_config(config, coder, data, val, dict(sets or {}), registry)
    for key, given, flag in (("train", data, "--data"), ("val", val, "--val")):
        _check_recorded_folder(src_dir, config, key, given, flag)
    coder_name = cfg["model"]["coder"]["name"]
    target = Path(out) if out is not None else default_out(src_dir, coder_name)
    if target.resolve() == src_dir.resolve():
        raise OutputError(f"--out {target} is the run being refitted",
                          "write the refitted run to another folder (--out)")  # fmt: skip
    source = build_codec(config["model"], registry)
    load_weights(source, src_dir / "weights.safetensors")
    codec = build_codec(cfg["model"], registry)  # refuses a coder that cannot work, saying why
    _transfer_transform(source, codec)
    train_cfg = TrainConfig(**{**cfg["train"], "steps": None})  # the build's cap is not this stage's
    images = training_images(cfg["data"].get("train"))
    prepare_run_dir(target, overwrite)
    write_text(target / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    fitter = CoderFitter(codec, train_cfg, images, run_dir=target, progress=progress, device=device)
    if progress is not None:
        progress.message(f"{fitter.describe()} (transform from {src_dir})")
    fit = fitter.run()
    codec.update(force=True)
    codec = codec.cpu().eval()
    save_weights(codec, target / "weights.safetensors")
    val = validation_images(cfg["data"].get("val"))
    ev = evaluate(codec, val, progress)
    name = "+".join(cfg["model"][k]["name"] for k in ("encoder", "rate", "coder"))
    write_json(target / "metrics.json", ev.to_compressai(
        name, f"codec-lab {name}, coder refitted from {src_dir.name}, real files on {len(val)} "
        "validation image(s)"))  # fmt: skip
    write_json(target / "run.json", run_info(
        codec,
        refitted_from=str(src_dir),
        refitted_from_digest=run_record(src_dir).get("weights_digest"),
        coder_fitting=fit.fitting,
        fit_images=fit.images,
        fit_steps=fit.steps,
        fit_loss=fit.last_loss,
        fit_seconds=round(fit.seconds, 2),
        train_images=len(images),
    ))
    write_text(target / "report.md", _report(src_dir, cfg, codec, fit, ev))
    return RefitResult(target, codec, fit, ev, cfg)


def _report(src: Path, cfg: dict[str, Any], codec: Codec, fit: CoderFit, ev: Results) -> str:
    what = {"counted": f"counted on {fit.images} training image(s)",
            "trained": f"trained for {fit.steps} steps (log: coder_log.csv)",
            "none": "nothing to fit"}[fit.fitting]  # fmt: skip
    lines = ["# codec-lab run (coder refitted)", "",
             f"Created {_dt.datetime.now().isoformat(timespec='seconds')} by `codec fit-coder` from "
             f"`{src}`: the transform's weights are that run's; coder "
             f"`{cfg['model']['coder']['name']}` {what} in {fit.seconds:.0f} s.", ""]  # fmt: skip
    if ev.rows:
        lines += ["Validation (real files; bpp = bytes × 8 / pixels; est. bpp is the model's "
                  "likelihood estimate):", "", markdown_table(ev)]  # fmt: skip
    return "\n".join(lines) + "\n"
