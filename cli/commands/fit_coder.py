"""``codec fit-coder``: refit or swap a trained run's entropy coder, transform untouched."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from codec_lab.cli._options import Device, Force, RequiredModel
from codec_lab.cli._output import BarProgress, err, handle_errors, out
from codec_lab.corelib.config import parse_sets
from codec_lab.corelib.data import validation_images
from codec_lab.corelib.devices import resolve_device
from codec_lab.registry.fit_coder import refit_run
from codec_lab.registry.shipped_models import resolve


@handle_errors
def fit_coder(
    model: RequiredModel,
    coder: Annotated[str | None, typer.Option(
        help="Coder to use instead of the run's (`codec plugins`); default: refit the run's own.")] = None,
    data: Annotated[Path | None, typer.Option(
        help="Training images to fit on (default: the run's training images).")] = None,
    val: Annotated[Path | None, typer.Option(
        help="Images to evaluate the new run on (default: the run's validation images).")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", "-o", help="New run folder (default: RUN-CODER beside the run; for a shipped model, "
                            "NAME-CODER in the current folder).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Coder or training keys: --set model.coder.momentum=0.9, "
                      "--set train.coder_steps=2000 (repeatable).")] = None,
    force: Force = False,
    device: Device = "auto",
) -> None:
    """Fit a trained run's entropy coder again, or swap it for another, without retraining.

    The new run keeps the transform's weights byte for byte; the coder is fitted the way it
    declares (counted on whole training images, trained with its own optimizer, or nothing
    to fit), then the run is evaluated on its validation images with real files. --model
    takes a run folder or a shipped model (`codec models`); a shipped model was trained on data
    you may not have: pass --data and --val.

    Examples:
      codec fit-coder --model runs/admm1                        # refit the histogram
      codec fit-coder --model runs/admm1 --coder histogram --data ../shared/data/bsds500/train
      codec fit-coder --model runs/imp1 --coder inclined-tcae --set train.coder_steps=2000
    """
    chosen = resolve(model)
    if chosen.shipped is not None and out_dir is None:  # never write into the installed package
        out_dir = Path(f"{chosen.shipped.name}-{coder or chosen.shipped.components.get('coder', 'coder')}")
    result = refit_run(chosen.path, coder=coder, data=data, val=val, out=out_dir, sets=parse_sets(set_ or []),
                       progress=BarProgress(), overwrite=force, device=resolve_device(device))  # fmt: skip
    m = result.evaluation.mean()
    fit = result.fit
    what = {"counted": f"fitted on {fit.images} image(s)", "trained": f"trained {fit.steps} steps",
            "none": "nothing to fit"}[fit.fitting]  # fmt: skip
    out.print(f"\nRun folder: {result.out}", highlight=False)
    out.print(f"  coder {result.config['model']['coder']['name']}: {what} in {fit.seconds:.0f} s; "
              f"validation: real bpp {m.get('bpp', float('nan')):.4f} (estimated "
              f"{m.get('est_bpp', float('nan')):.4f}), PSNR {m.get('psnr', float('nan')):.2f} dB",
              highlight=False)  # fmt: skip
    held_out = validation_images(result.config["data"].get("val"))
    err.print("Evaluate it on the held-out images:", highlight=False)
    err.print(f"  codec eval --model {shlex.quote(str(result.out))} "
              f"--data {shlex.quote(str(held_out[0].parent))}", highlight=False)
