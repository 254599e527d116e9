"""``codec build``: compose a codec from plugins and train it."""

from __future__ import annotations

import datetime as _dt
import json
import shlex
from pathlib import Path
from typing import Annotated

import typer
import yaml

from codec_lab.cli import _state
from codec_lab.cli._output import BarProgress, err, handle_errors, out
from codec_lab.corelib.config import load_yaml, parse_sets
from codec_lab.corelib.data import validation_images
from codec_lab.corelib.devices import cpu_busy, resolve_device
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec
from codec_lab.registry.runs import describe, train_run


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
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the composed codec and config; do not train.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: print JSON.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", "-f", help="Replace an earlier run in --out (only a run folder is replaced).")] = False,
) -> None:
    """Compose a codec from plugins and train it.

    With no data it trains on the samples shipped in the package. Ends by printing the
    run folder and the commands to compress an image with it.

    Examples:
      codec build --rate admm
      codec build --rate admm --data ../shared/data/bsds500/train --out runs/admm1 --preset cpu
      codec build --rate admm --set model.rate.keep=0.2 --dry-run
    """
    registry = Registry()
    file_cfg = load_yaml(config) if config else {}
    train_over = {k: v for k, v in {"steps": steps, "device": device}.items() if v is not None}
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
    if out_dir is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        m = cfg["model"]
        out_dir = Path("runs") / f"{m['encoder']['name']}-{m['rate']['name']}-{stamp}"
    _notices(cfg)
    where = cfg["data"]["train"] or "built-in samples"
    err.print(f"Training {cfg['model']['encoder']['name']} + {cfg['model']['rate']['name']} + "
              f"{cfg['model']['coder']['name']} (preset {cfg['preset']}) on {where} → {out_dir}",
              highlight=False)  # fmt: skip
    _, result, ev = train_run(cfg, out_dir, registry, BarProgress(), overwrite=force)
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
    out.print("\nCompress and restore a held-out image with it:", highlight=False)
    out.print(f"  codec compress {shlex.quote(str(example))} --model {run} -o {example.stem}.cdl",
              highlight=False)
    out.print(f"  codec decompress {example.stem}.cdl --model {run} -o {example.stem}.decoded.png",
              highlight=False)
    out.print(f"Evaluate it on the {len(held_out)} held-out image(s):", highlight=False)
    out.print(f"  codec eval --model {run} --data {shlex.quote(str(example.parent))}", highlight=False)


def _notices(cfg: dict) -> None:
    """Warn about what makes a build slow or its numbers misleading, before it starts."""
    data = cfg["data"]
    if data["train"] and data["val"] and Path(data["train"]).resolve() == Path(data["val"]).resolve():
        err.print("Notice: --val is the training folder; the validation numbers will flatter the "
                  "codec (pass a folder of images it does not train on)", highlight=False)
    busy = cpu_busy()
    device = cfg["train"].get("device", "auto")
    if busy and _state.threads is None and resolve_device(device).type == "cpu":
        load, cores = busy
        err.print(f"Notice: the CPU is already busy (load {load:.1f} on {cores} cores); training "
                  "beside another job can run many times slower. `codec --threads 1 build …` "
                  "(or CODEC_THREADS=1) avoids the oversubscription.", highlight=False)
