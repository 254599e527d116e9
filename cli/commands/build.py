"""``codec build``: compose a codec from plugins and train it."""

from __future__ import annotations

import datetime as _dt
import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from codec_lab.cli import _state
from codec_lab.cli._launch import launch
from codec_lab.cli._output import BarProgress, err, handle_errors, out
from codec_lab.corelib.config import load_yaml, parse_sets
from codec_lab.corelib.data import training_images, validation_images
from codec_lab.corelib.devices import cpu_busy, resolve_device
from codec_lab.corelib.distributed import (
    broadcast_object,
    check_batch_split,
    init_from_env,
    is_main,
    launched_by_torchrun,
)
from codec_lab.corelib.errors import ConfigError, OutputError
from codec_lab.corelib.results import Results
from codec_lab.corelib.runs import config_matches, read_config, run_state
from codec_lab.corelib.training import TrainResult
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec
from codec_lab.registry.runs import (
    check_resumable,
    check_run_dir_free,
    describe,
    init_weights,
    resume_run,
    train_run,
)


@handle_errors
def build(
    rate: Annotated[str | None, typer.Option(help="Rate plugin: admm, … (`codec plugins`).")] = None,
    preset: Annotated[str | None, typer.Option(
        help="Recipe and network size: quick (default, samples, minutes), cpu (<1 h on "
             "this machine), paper (the paper's, for a GPU).")] = None,
    data: Annotated[Path | None, typer.Option(
        help="Folder of training images (default: the built-in samples).")] = None,
    val: Annotated[Path | None, typer.Option(
        help="Folder of images to evaluate after training (default: held-out samples).")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Run folder to write (default: runs/<encoder>-<rate>-<time>).")] = None,
    steps: Annotated[int | None, typer.Option(help="Cap the optimizer steps.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override any key: --set model.rate.keep=0.2 (repeatable).")] = None,
    encoder: Annotated[str | None, typer.Option(help="Encoder plugin.")] = None,
    quantizer: Annotated[str | None, typer.Option(help="Quantizer plugin.")] = None,
    coder: Annotated[str | None, typer.Option(help="Entropy-coder plugin.")] = None,
    decoder: Annotated[str | None, typer.Option(help="Decoder plugin.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda.")] = None,
    init: Annotated[str | None, typer.Option(
        "--init", metavar="RUN",
        help="Start from the weights of a trained run or shipped model (fine-tuning, e.g. another "
             "rate point): same networks, other settings allowed. Sets train.init.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the composed codec and config; do not train.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: print JSON.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", "-f", help="Replace an earlier run in --out (only a run folder is replaced).")] = False,
    resume: Annotated[Path | None, typer.Option(
        "--resume", metavar="RUN",
        help="Continue the interrupted build in run folder RUN from its last checkpoint (with its "
             "own config; only --device and --nproc may be given).")] = None,
    nproc: Annotated[int | None, typer.Option(
        "--nproc", min=1, metavar="N",
        help="Train on N processes with PyTorch DistributedDataParallel, started with torchrun "
             "(CPU: gloo; CUDA: NCCL, one GPU per process). train.batch_size is the global "
             "batch. Several machines: docs/distributed.md.")] = None,
) -> None:
    """Compose a codec from plugins and train it.

    With no data it trains on the samples shipped in the package. Ends by printing the
    run folder and the commands to compress an image with it.

    Examples:
      codec build --rate admm
      codec build --rate admm --data ../shared/data/bsds500/train --out runs/admm1 --preset cpu
      codec build --rate admm --set model.rate.keep=0.2 --dry-run
      codec build --resume runs/admm1
      codec build --rate entropy --preset cpu --init entropy-q3 --set model.rate.weight=300
      codec build --rate entropy --nproc 2 --data ../shared/data/bsds500/train

    A build checkpoints every epoch (and every train.checkpoint_every steps): killed at any
    moment, it continues with --resume to the weights an uninterrupted run reaches.
    """
    registry = Registry()
    if resume is not None:
        given = [flag for flag, v in (("--rate", rate), ("--preset", preset), ("--data", data),
                                      ("--val", val), ("--steps", steps), ("--config", config),
                                      ("--set", set_), ("--encoder", encoder), ("--quantizer", quantizer),
                                      ("--coder", coder), ("--decoder", decoder), ("--init", init),
                                      ("--dry-run", dry_run),
                                      ("--force", force)) if v]  # fmt: skip
        if out_dir is not None and out_dir.resolve() != resume.resolve():
            given.append("--out")
        if given:
            raise ConfigError(f"--resume continues a build with its own config; {', '.join(given)} "
                             "cannot change it", f"run `codec build --resume {shlex.quote(str(resume))}`"
                             " alone, or start a new build without --resume")  # fmt: skip
        _resume(resume, registry, device, nproc)
        return
    file_cfg = load_yaml(config) if config else {}
    train_over = {k: v for k, v in {"steps": steps, "device": device, "init": init}.items() if v is not None}
    data_over = {k: str(v) for k, v in {"train": data, "val": val}.items() if v is not None}
    cfg = assemble_config(
        registry,
        rate=rate,
        preset=preset,
        config=file_cfg,
        components={"encoder": encoder, "quantizer": quantizer, "coder": coder,
                    "decoder": decoder},  # fmt: skip
        train=train_over,
        data=data_over,
        sets=parse_sets(set_ or []),
    )
    if dry_run:
        info = describe(build_codec(cfg["model"], registry), cfg["train"]["crop"])
        if as_json:
            out.print_json(json.dumps({"config": cfg, "codec": info}))
            return
        out.print(yaml.safe_dump({"config": cfg}, sort_keys=False).rstrip(), highlight=False)
        out.print("\ncomposed codec:")
        for kind, c in info["components"].items():
            out.print(f"  {kind:<10} {c['name']:<18} v{c['version']:<6} {c['parameters']:>10,} params")
        out.print(f"  total parameters {info['parameters']:,}")
        out.print(f"  latent per {info['patch']}x{info['patch']} patch: "
                  f"{' x '.join(map(str, info['latent_shape']))} "
                  f"({info['symbols_per_pixel']:.3f} symbols/pixel)")
        for s in info["streams"]:
            out.print(f"  stream {s['name']!r}: {s['channels']} channels, alphabet "
                      f"{s['alphabet'] if s['alphabet'] is not None else 'unbounded integers'}")
        return
    worker = launched_by_torchrun()
    if worker:
        init_from_env(resolve_device(cfg["train"]["device"]))
    if out_dir is None and is_main():
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        m = cfg["model"]
        out_dir = Path("runs") / f"{m['encoder']['name']}-{m['rate']['name']}-{stamp}"
    if is_main() and not force and run_state(out_dir).status == "interrupted":
        _offer_resume(out_dir, cfg, registry, device, nproc)
        return
    if nproc is not None and nproc > 1 and not worker:
        # Checked here, so that a mistake is one line rather than N failing workers.
        check_run_dir_free(out_dir, force)
        check_batch_split(cfg["train"]["batch_size"], nproc)
        if cfg["train"].get("init"):
            init_weights(build_codec(cfg["model"], registry), cfg["train"]["init"], cfg.get("preset"))
        training_images(cfg["data"]["train"])
        validation_images(cfg["data"]["val"])
        _notices(cfg)
        raise typer.Exit(launch(nproc, _build_args(
            rate=rate, preset=preset, data=data, val=val, steps=steps, config=config, sets=set_,
            encoder=encoder, quantizer=quantizer, coder=coder, decoder=decoder, device=device,
            init=init, force=force, out_dir=out_dir), out_dir))  # fmt: skip
    # Every process of a distributed build writes to rank 0's folder (its checks passed).
    out_dir = broadcast_object(out_dir)
    if not is_main():
        train_run(cfg, out_dir, registry, None, overwrite=force)
        return
    _notices(cfg, busy=not worker)  # torchrun's processes keep each other's cores busy
    where = cfg["data"]["train"] or "built-in samples"
    err.print(f"Training {cfg['model']['encoder']['name']} + {cfg['model']['rate']['name']} + "
              f"{cfg['model']['coder']['name']} (preset {cfg['preset']}) on {where} → {out_dir}",
              highlight=False)  # fmt: skip
    _, result, ev = train_run(cfg, out_dir, registry, BarProgress(), overwrite=force)
    _summary(cfg, out_dir, result, ev)


def _build_args(*, sets: list[str] | None, force: bool, out_dir: Path, **options: object) -> list[str]:
    """The ``codec build`` options that reproduce this command in torchrun's processes."""
    args = [a for name, v in options.items() if v is not None
            for a in (f"--{name}", str(v))]  # fmt: skip
    for s in sets or []:
        args += ["--set", s]
    return [*args, *(["--force"] if force else []), "--out", str(out_dir)]


def _offer_resume(out_dir: Path, cfg: dict, registry: Registry, device: str | None,
                  nproc: int | None) -> None:  # fmt: skip
    """The same command again on an interrupted build: offer to continue it."""
    state = run_state(out_dir)
    run = shlex.quote(str(out_dir))
    if not config_matches(out_dir, cfg):
        raise OutputError(f"{out_dir} holds an unfinished build of another configuration (it stopped "
                          f"{state.detail})", f"continue that one with `codec build --resume {run}`, or "
                          "pass --force to replace it with this one, or choose another --out")  # fmt: skip
    if sys.stdin.isatty() and sys.stderr.isatty():
        err.print(f"{out_dir} holds this build, unfinished: it stopped {state.detail}.", highlight=False)
        if typer.confirm("Continue it?", default=True, err=True):
            _resume(out_dir, registry, device, nproc)
            return
        raise OutputError(f"{out_dir} holds an unfinished build", "pass --force to start it over, "
                          "or choose another --out")  # fmt: skip
    raise OutputError(f"{out_dir} holds this build, unfinished: it stopped {state.detail}",
                      f"continue it with `codec build --resume {run}`, or pass --force to start over")


def _resume(run: Path, registry: Registry, device: str | None, nproc: int | None = None) -> None:
    state = check_resumable(run)
    cfg = read_config(run)
    worker = launched_by_torchrun()
    if nproc is not None and nproc > 1 and not worker:
        args = ["--resume", str(run), *(["--device", device] if device else [])]
        raise typer.Exit(launch(nproc, args, run))
    if worker:
        init_from_env(resolve_device(device or (cfg.get("train") or {}).get("device", "auto")))
    if not is_main():
        resume_run(run, registry, None, device=device)
        return
    err.print(f"Resuming {cfg['model']['encoder']['name']} + {cfg['model']['rate']['name']} + "
              f"{cfg['model']['coder']['name']} in {run} (it stopped {state.detail})",
              highlight=False)  # fmt: skip
    _, result, ev = resume_run(run, registry, BarProgress(), device=device)
    _summary(cfg, run, result, ev)


def _summary(cfg: dict, out_dir: Path, result: TrainResult, ev: Results) -> None:
    """What the build did, and the commands to use its run."""
    m = ev.mean()
    out.print(f"\nRun folder: {out_dir}", highlight=False)
    fit = (f" + coder fit on {result.fit_images} image(s), {result.fit_seconds:.0f} s" if result.fit_images
           else f" + coder trained {result.fit_steps} steps, {result.fit_seconds:.0f} s" if result.fit_steps
           else "")  # fmt: skip
    out.print(f"  {result.steps} steps, {result.seconds:.0f} s{fit}; validation: real bpp "
              f"{m.get('bpp', float('nan')):.4f} (estimated {m.get('est_bpp', float('nan')):.4f}), "
              f"PSNR {m.get('psnr', float('nan')):.2f} dB, MS-SSIM {m.get('ms-ssim', float('nan')):.4f}",
              highlight=False)  # fmt: skip
    # Every suggestion uses held-out images: evaluating on training images flatters a codec.
    held_out = validation_images(cfg["data"]["val"])
    example = held_out[0]
    run = shlex.quote(str(out_dir))
    stem = shlex.quote(_free_stem(example.stem, out_dir.name))
    out.print("\nCompress and restore a held-out image with it:", highlight=False)
    out.print(f"  codec compress {shlex.quote(str(example))} --model {run} -o {stem}.cdl", highlight=False)
    out.print(f"  codec decompress {stem}.cdl --model {run} -o {stem}.decoded.png", highlight=False)
    out.print(f"Evaluate it on the {len(held_out)} held-out image(s):", highlight=False)
    out.print(f"  codec eval --model {run} --data {shlex.quote(str(example.parent))}", highlight=False)


def _free_stem(stem: str, run_name: str) -> str:
    """A name for the suggested outputs that exists in neither form yet: the suggestion must work
    as printed, and a user who followed the README already has ``kodim20.cdl`` from a shipped model."""
    taken = any(Path(stem + ext).exists() for ext in (".cdl", ".decoded.png"))
    return f"{stem}-{run_name}" if taken else stem  # run folders are new, so are their names


def _notices(cfg: dict, busy: bool = True) -> None:
    """Warn about what makes a build slow or its numbers misleading, before it starts."""
    data = cfg["data"]
    if data["train"] and data["val"] and Path(data["train"]).resolve() == Path(data["val"]).resolve():
        err.print("Notice: --val is the training folder; the validation numbers will flatter the "
                  "codec (pass a folder of images it does not train on)", highlight=False)
    load = cpu_busy() if busy else None
    device = cfg["train"].get("device", "auto")
    if load and _state.threads is None and resolve_device(device).type == "cpu":
        load_avg, cores = load
        err.print(f"Notice: the CPU is already busy (load {load_avg:.1f} on {cores} cores); training "
                  "beside another job can run many times slower. `codec --threads 1 build …` "
                  "(or CODEC_THREADS=1) avoids the oversubscription.", highlight=False)
