"""``codec eval``: real-file evaluation of a run on a folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codec_lab.cli._options import Device, Force, Quality, RequiredModel
from codec_lab.cli._output import BarProgress, err, handle_errors, out
from codec_lab.corelib.devices import resolve_device
from codec_lab.corelib.errors import OutputError
from codec_lab.corelib.evaluation import evaluate
from codec_lab.corelib.images import list_images
from codec_lab.corelib.outputs import check_output
from codec_lab.corelib.render import terminal_table
from codec_lab.corelib.runs import write_json
from codec_lab.registry.runs import load_run
from codec_lab.registry.shipped_models import resolve


@handle_errors
def evaluate_cmd(
    model: RequiredModel,
    data: Annotated[Path, typer.Option("--data", "-d", help="Folder of images.")],
    quality: Quality = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write results in CompressAI's JSON schema here.")] = None,
    keep: Annotated[Path | None, typer.Option(
        help="Keep the compressed files (NAME.cdl) and reconstructions (NAME.decoded.png) in "
             "this folder.")] = None,
    force: Force = False,
    device: Device = "auto",
) -> None:
    """Compress and decompress every image with real files; print bpp, PSNR, MS-SSIM, SSIM, times.

    bpp is the file size × 8 / pixels. "est. bpp" is the model's likelihood estimate.

    --model takes a run folder or a shipped model (`codec models`; with a family, --quality
    1..4 picks its rate point). Existing --json or --keep files are refused unless --force is
    given.

    Examples:
      codec eval --model runs/admm1 --data ../shared/data/kodak --json admm1.json
      codec eval --model entropy --quality 2 --data ../shared/data/kodak
    """
    if json_out is not None:
        check_output(json_out, force)
    chosen = resolve(model, quality)
    dev = resolve_device(device)
    images = list_images(data)
    codec = load_run(chosen.path)
    if keep is not None:
        try:
            keep.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create --keep folder {keep}: {e.strerror}",
                              "give a folder path you can write to") from e
    result = evaluate(codec, images, BarProgress(), keep_dir=keep, overwrite=force, device=dev)
    for notice in result.notices:
        err.print(f"Notice: {notice}", highlight=False)
    # The codec's own description names its streams and the rate's declared columns.
    out.print(terminal_table(result, title=f"{chosen.label} on {data} ({len(images)} images)"))
    if json_out is not None:
        write_json(json_out, result.to_compressai(description=f"codec-lab {chosen.label}, real files"),
                   overwrite=force)
        out.print(f"Wrote {json_out} (results in CompressAI's schema)", highlight=False)
    if keep is not None:
        out.print(f"Kept the compressed files and reconstructions in {keep}", highlight=False)
