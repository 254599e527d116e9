"""Ship a finished run as one of the package's ready-to-use models (a maintainer's tool).

::

    python -m codec_lab.registry.ship_model RUN --name NAME [--family F] [--quality Q] \\
        --command "the codec build command that trained RUN" [--source TEXT] [--force]

copies the run's ``config.yaml``, ``weights.safetensors``, ``run.json`` and ``metrics.json``
into ``registry/shipped/NAME/`` and records the model in ``registry/shipped/models.json``
(:mod:`codec_lab.registry.shipped_models`): the weights' SHA-256 and size, the model digest
compressed files store, the metrics the build measured with real files, the training facts
and ``--command``. An unfinished build, a run whose weights are not the ones its ``run.json``
names, and an existing name (without ``--force``) are refused. The folder appears whole or
not at all (it is copied aside, then renamed into place), and the index is written atomically.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from codec_lab.corelib.contracts import NAME_PATTERN
from codec_lab.corelib.errors import CodecError, ConfigError, OutputError, RunError
from codec_lab.corelib.outputs import atomic_output
from codec_lab.corelib.results import Results
from codec_lab.corelib.runs import check_run_dir, read_config, write_json
from codec_lab.registry import shipped_models
from codec_lab.registry.runs import load_run
from codec_lab.registry.shipped_models import (
    INDEX,
    INDEX_FORMAT,
    QUALITIES,
    ShippedModel,
    file_sha256,
    load_index,
)

__all__ = ["SHIPPED_FILES", "main", "ship"]

SHIPPED_FILES = ("config.yaml", "weights.safetensors", "run.json", "metrics.json")
"""What a shipped model keeps of its run: what loading needs, and its provenance (small)."""

KODAK = frozenset(f"kodim{i:02d}.png" for i in range(1, 25))
"""The 24 Kodak image names: metrics measured on exactly these are labelled ``Kodak``."""

_FINISH = "ship a run that `codec build` finished (it writes run.json and metrics.json)"


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RunError(f"{path.parent} has no {path.name}: it is not a finished build", _FINISH)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path} is unreadable ({e})", _FINISH) from e
    if not isinstance(doc, dict):
        raise RunError(f"{path} is not a JSON object", _FINISH)
    return doc


def _metrics(run: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Means of the build's real-file evaluation, and which images it used."""
    doc = _read_json(run / "metrics.json")
    try:
        means = Results.from_compressai(doc).mean()
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{run / 'metrics.json'} is not a results file ({e})", _FINISH) from e
    names = {str(r.get("image")) for r in doc.get("per_image") or [] if isinstance(r, dict)}
    if names == KODAK:
        where = "Kodak"
    else:  # the build's validation folder, by name: never labelled Kodak unless it is
        val = (config.get("data") or {}).get("val")
        where = Path(str(val)).name if val else "held-out samples"
    if "bpp" not in means or "psnr" not in means:
        raise RunError(f"{run / 'metrics.json'} has no bpp or PSNR", _FINISH)
    return {"set": where, "images": len(names) or None, "bpp": round(means["bpp"], 5),
            "psnr": round(means["psnr"], 4),
            "ms_ssim": round(means["ms-ssim"], 6) if means.get("ms-ssim") is not None else None}  # fmt: skip


def _init_chain(init: dict[str, Any]) -> dict[str, Any]:
    """``init`` of a fine-tuned run, with the earlier fine-tuning rounds it rests on: where the
    source run is still on disk and was itself started with ``--init``, its steps are added to
    ``rounds`` (oldest first) and the walk goes on to its source; ``base`` is where the chain
    starts (a build's checkpoint or a run not started from another)."""
    rounds: list[dict[str, Any]] = []
    cur, seen = init, set()
    while isinstance(cur.get("from"), str) and cur["from"] not in seen:
        seen.add(cur["from"])
        try:
            doc = _read_json(Path(cur["from"]) / "run.json")
        except RunError:  # not on disk here, or not a finished build: the chain stops
            break
        earlier = doc.get("init")
        if not (isinstance(earlier, dict) and isinstance(doc.get("steps"), int)):
            break
        seconds = float(doc.get("train_seconds") or 0) + float(doc.get("fit_seconds") or 0)
        rounds.insert(0, {"run": Path(cur["from"]).name, "steps": doc["steps"], "seconds": round(seconds, 1)})
        cur = earlier
    if not rounds:
        return init
    base = {k: cur[k] for k in ("from", "step") if k in cur}
    return {**init, "rounds": rounds, "base": base}


def _training(info: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    train_s = float(info.get("train_seconds") or 0)
    fit_s = float(info.get("fit_seconds") or 0)
    return {"steps": info.get("steps"), "epochs": info.get("epochs"), "seconds": round(train_s + fit_s, 1),
            "train_seconds": train_s, "fit_seconds": fit_s, "preset": config.get("preset"),
            "images": info.get("train_images"), "data": (config.get("data") or {}).get("train"),
            "codec_lab": info.get("codec_lab"), "torch": info.get("torch"),
            **({"init": _init_chain(info["init"])}
               if isinstance(info.get("init"), dict) else {})}  # fmt: skip


def _copy_into(staging: Path, run: Path) -> None:
    """Copy the run's shipped files into ``staging``, each fsynced (``atomic_output``)."""
    for name in SHIPPED_FILES:
        with atomic_output(staging / name) as tmp:
            shutil.copyfile(run / name, tmp)


def _publish(staging: Path, target: Path) -> None:
    """Put the staged folder in ``target``'s place; an earlier model there goes only after."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        if old.exists():
            os.replace(old, target)  # put the earlier model back
        raise
    shutil.rmtree(old, ignore_errors=True)


def ship(run: str | Path, name: str, *, command: str, family: str | None = None,
         quality: int | None = None, source: str | None = None, force: bool = False,
         folder: Path | None = None) -> ShippedModel:  # fmt: skip
    """Copy the finished run ``run`` into the shipped models as ``name`` and index it.

    Args:
        name: the model's name (lowercase kebab-case): what ``--model`` takes.
        command: the exact command that trained the run (recorded, shown by ``codec models``).
        family: models differing only in their rate point share one (default: ``name``).
        quality: the rate point within the family, 1..4 (1: smallest file), or None.
        source: one line on where it came from (default: the run, versions and date).
        force: replace a model already shipped under ``name``.
        folder: the shipped-models folder (default: ``shipped_models.shipped_dir()``).

    Raises:
        ConfigError: a bad name, family or quality; the family already has this quality; the
            same weights are shipped under another name (a file's digest would name two models).
        RunError: ``run`` is not a finished build, or its weights are not its ``run.json``'s.
        OutputError: ``name`` is shipped already and ``force`` is not set.
    """
    folder = folder or shipped_models.shipped_dir()  # looked up at call time: tests redirect it
    family = family or name
    for what, value in (("--name", name), ("--family", family)):
        if not NAME_PATTERN.fullmatch(value):
            raise ConfigError(f"{what} {value!r} is not lowercase kebab-case", "e.g. entropy-q3")
    if quality is not None and quality not in QUALITIES:
        raise ConfigError(f"--quality {quality}: not a rate point",
                          f"pass one of {', '.join(map(str, QUALITIES))}")  # fmt: skip
    if not command.strip():
        raise ConfigError("--command is empty", "give the exact `codec build …` command that trained the run")
    run_dir = check_run_dir(run)  # refuses an interrupted build, naming the resume command
    config = read_config(run_dir)
    info = _read_json(run_dir / "run.json")
    metrics = _metrics(run_dir, config)
    index = load_index(folder)
    target = folder / name
    if (target.exists() or any(m.name == name for m in index)) and not force:
        raise OutputError(f"a model named {name!r} is shipped already ({target})",
                          "pass --force to replace it, or choose another --name")  # fmt: skip
    clash = next((m for m in index if m.name != name and m.family == family and quality is not None
                  and m.quality == quality), None)  # fmt: skip
    if clash is not None:
        raise ConfigError(f"family {family!r} has quality {quality} already: model {clash.name!r}",
                          f"replace that one (--name {clash.name} --force), or choose another --quality")
    codec = load_run(run_dir)  # the run must load as users will load it
    digest = codec.weights_digest()
    if info.get("weights_digest") not in (None, digest):
        raise RunError(f"{run_dir / 'weights.safetensors'} is not the weights its run.json names "
                       f"(model digest {digest}, run.json {info['weights_digest']})",
                       "the run folder was modified; rebuild it with `codec build`")  # fmt: skip
    twin = next((m for m in index if m.name != name and m.model_digest == digest), None)
    if twin is not None:
        raise ConfigError(f"{run_dir} holds the weights of shipped model {twin.name!r}",
                          "a compressed file names its model by digest: ship each model once")  # fmt: skip
    sha = file_sha256(run_dir / "weights.safetensors")
    built = _dt.date.fromtimestamp((run_dir / "weights.safetensors").stat().st_mtime).isoformat()
    model = ShippedModel(
        name=name, family=family, quality=quality,
        components={k: str(v.get("name")) for k, v in config["model"].items() if isinstance(v, dict)},
        sha256=sha, bytes=(run_dir / "weights.safetensors").stat().st_size, model_digest=digest,
        metrics=metrics, training=_training(info, config), command=command.strip(),
        source=source or (f"`codec build` run {run_dir.name}, trained {built} with codec-lab "
                          f"{info.get('codec_lab', '?')} (torch {info.get('torch', '?')}); metrics measured "
                          "by the build with real files"),
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".{name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _copy_into(staging, run_dir)
        if file_sha256(staging / "weights.safetensors") != sha:
            raise RunError(f"the copy of {run_dir / 'weights.safetensors'} differs from it",
                           "check the disk, then ship again")  # fmt: skip
        _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    models = [m for m in index if m.name != name] + [model]
    models.sort(key=lambda m: (m.family, m.quality or 0, m.name))
    write_json(folder / INDEX, {
        "format": INDEX_FORMAT,
        "about": "Models shipped with codec-lab: written by `python -m codec_lab.registry.ship_model`; "
                 "see docs/models.md. Metrics are means over the evaluation images, real files.",
        "models": [m.to_dict() for m in models],
    }, overwrite=True)  # fmt: skip
    return model


def main(argv: list[str] | None = None) -> int:
    """``python -m codec_lab.registry.ship_model RUN --name NAME --command "…" [options]``."""
    parser = argparse.ArgumentParser(prog="python -m codec_lab.registry.ship_model",
                                     description=(__doc__ or "").split("\n")[0])  # fmt: skip
    parser.add_argument("run", type=Path, help="a run folder `codec build` finished")
    parser.add_argument("--name", required=True, help="the model's name, what --model takes (entropy-q3)")
    parser.add_argument("--family", help="models differing only in their rate point share one (default NAME)")
    parser.add_argument("--quality", type=int, choices=QUALITIES,
                        help="rate point in the family (1: smallest file)")  # fmt: skip
    parser.add_argument("--command", required=True, help="the exact command that trained the run")
    parser.add_argument("--source", help="one line on where it came from (default: run, versions, date)")
    parser.add_argument("--force", action="store_true", help="replace a model shipped under NAME")
    args = parser.parse_args(argv)
    try:
        model = ship(args.run, args.name, command=args.command, family=args.family, quality=args.quality,
                     source=args.source, force=args.force)  # fmt: skip
    except CodecError as e:
        print(f"Error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  → {e.hint}", file=sys.stderr)
        return e.exit_code
    m = model.metrics
    print(f"shipped {model.name} ({model.family}, quality {model.quality}) → {model.path}: "
          f"{model.bytes:,} bytes, sha256 {model.sha256[:16]}…, {m['set']} {m['bpp']:.4f} bpp, "
          f"{m['psnr']:.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
