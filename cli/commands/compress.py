"""``codec compress``: image → compressed file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codec_lab.cli._options import Device, Force, Model, Quality
from codec_lab.cli._output import err, handle_errors, out
from codec_lab.corelib.devices import resolve_device
from codec_lab.corelib.files import encode_image
from codec_lab.corelib.images import open_for_coding
from codec_lab.corelib.outputs import atomic_output, check_output
from codec_lab.corelib.tiling import DEFAULT_TILE, LARGE_TILE, resolve_tile
from codec_lab.registry.runs import load_run
from codec_lab.registry.shipped_models import resolve


def default_output(image: Path) -> Path:
    """``photo.png`` → ``photo.png.cdl`` in the current folder (``photo.jpg`` gets its own)."""
    return Path(f"{image.name}.cdl")


@handle_errors
def compress(
    image: Annotated[Path, typer.Argument(help="Image to compress (PNG, JPEG, …; any size).")],
    model: Model = None,
    quality: Quality = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o",
        help="Compressed file to write (default: the image's file name + .cdl, in the current "
             "folder: photo.png → photo.png.cdl).")] = None,
    tile: Annotated[int | None, typer.Option(
        "--tile",
        help=f"Code the image in square tiles of this many pixels, so memory stays bounded at any "
             f"image size (default {DEFAULT_TILE}: a Kodak image is one tile; {LARGE_TILE} for "
             f"larger images, to bound memory; 0: the whole image at once). A multiple of the "
             f"model's tile unit (16 for most models); the file records it, so decompress needs "
             f"no option.")] = None,
    max_pixels: Annotated[int | None, typer.Option(
        "--max-pixels", min=1,
        help="Refuse larger images (height x width); default $CODEC_MAX_PIXELS or 268435456 "
             "(2**28).")] = None,
    force: Force = False,
    device: Device = "auto",
) -> None:
    """Compress an image into a real file with a trained codec.

    With no --model, the shipped default model is used (`codec models` lists them); --quality
    1..4 picks its rate point (1: smallest file). --model takes a shipped model's name, a
    shipped family with --quality, or a run folder from `codec build`.

    An existing output file is refused unless --force is given. Images of any size up to the
    pixel limit are coded tile by tile in bounded memory (--tile).

    Examples:
      codec compress photo.png -o photo.cdl
      codec compress photo.png -o photo.cdl --quality 1
      codec compress photo.png --model runs/admm1 -o photo.cdl
    """
    target = check_output(output or default_output(image), force, inputs=[image])
    chosen = resolve(model, quality)  # before the device and image: a typo fails at once
    dev = resolve_device(device)
    codec = load_run(chosen.path).to(dev)
    resolve_tile(codec, tile)  # a bad --tile is refused before the image is read
    # 8-bit: tiles become floats one at a time; a plain RGB PNG is even read row by row.
    pixels, notice = open_for_coding(image, max_pixels)
    if notice:
        err.print(f"Notice: {notice}", highlight=False)
    try:
        data = encode_image(codec, pixels, tile=tile)
    finally:
        pixels.close()
    with atomic_output(target, overwrite=force) as tmp:
        tmp.write_bytes(data)
    w, h = pixels.width, pixels.height
    size = target.stat().st_size
    with_model = f", model {chosen.shipped.name}" if chosen.shipped is not None else ""
    out.print(f"{image} → {target}: {size:,} bytes, {size * 8 / (h * w):.4f} bpp ({w}x{h}){with_model}",
              highlight=False)
