"""``codec eval``: real-file evaluation of a run on a folder of images."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from codec_lab.cli._options import Device, Force
from codec_lab.cli._output import BarProgress, err, handle_errors, out
from codec_lab.corelib.devices import resolve_device
from codec_lab.corelib.errors import OutputError
from codec_lab.corelib.evaluation import evaluate
from codec_lab.corelib.images import list_images
from codec_lab.corelib.outputs import check_output
from codec_lab.corelib.runs import write_json
from codec_lab.registry.runs import load_run


def _fmt(v: float, digits: int) -> str:
    return "n/a" if isinstance(v, float) and math.isnan(v) else f"{v:.{digits}f}"


@handle_errors
def evaluate_cmd(
    model: Annotated[Path, typer.Option("--model", "-m", help="Run folder from `codec build`.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Folder of images.")],
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

    Existing --json or --keep files are refused unless --force is given.

    Example:
      codec eval --model runs/admm1 --data ../shared/data/kodak --json admm1.json
    """
    if json_out is not None:
        check_output(json_out, force, flag="--force")
    dev = resolve_device(device)
    images = list_images(data)
    codec = load_run(model)
    if keep is not None:
        try:
            keep.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create --keep folder {keep}: {e.strerror}",
                              "give a folder path you can write to") from e
    result = evaluate(codec, images, BarProgress(), keep_dir=keep, overwrite=force, device=dev)
    for notice in result.notices:
        err.print(f"Notice: {notice}", highlight=False)
    table = Table(title=f"{model} on {data} ({len(images)} images)")
    # With side streams (e.g. an importance map) show where the bits go.
    streams = [s.name for s in codec.specs] if len(codec.specs) > 1 else []
    # Only rates that mask report the fraction of code positions sent.
    kept = any("kept" in r for r in result.rows)
    for col in ("image", "size", "bytes", "bpp", *(f"{s} bpp" for s in streams), "est. bpp", "PSNR",
                "MS-SSIM", "SSIM", *(["kept"] if kept else []), "enc s", "dec s"):  # fmt: skip
        table.add_column(col, justify="left" if col == "image" else "right")

    def add(r: dict, label: str, size: str, bytes_: str) -> None:
        table.add_row(label, size, bytes_, _fmt(r["bpp"], 4),
                      *(_fmt(r.get(f"bpp_{s}", float("nan")), 4) for s in streams),
                      _fmt(r["est_bpp"], 4), _fmt(r["psnr"], 2), _fmt(r["ms-ssim"], 4),
                      _fmt(r["ssim"], 4), *([_fmt(r.get("kept", float("nan")), 3)] if kept else []),
                      _fmt(r["enc_s"], 3), _fmt(r["dec_s"], 3))  # fmt: skip

    for r in result.rows:
        add(r, r["image"], f"{r['width']}x{r['height']}", f"{r['bytes']:,}")
    table.add_section()
    mean = result.mean()
    add(mean, "mean", "", f"{mean['bytes']:,.0f}")
    out.print(table)
    if json_out is not None:
        m = codec.config
        name = f"{m['encoder']['name']}+{m['rate']['name']}+{m['coder']['name']}"
        write_json(json_out, result.to_compressai(name, f"codec-lab {model}, real files"), overwrite=force)
        out.print(f"Wrote {json_out} (results in CompressAI's schema)", highlight=False)
    if keep is not None:
        out.print(f"Kept the compressed files and reconstructions in {keep}", highlight=False)
