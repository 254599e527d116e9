"""``codec decompress``: compressed file → image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codec_lab.cli._options import Device, Force, Model
from codec_lab.cli._output import handle_errors, out
from codec_lab.corelib.container import unpack
from codec_lab.corelib.devices import resolve_device
from codec_lab.corelib.errors import BitstreamError
from codec_lab.corelib.files import decode_image, decode_to_png, read_compressed
from codec_lab.corelib.images import IMAGE_SUFFIXES, image_format, save_image
from codec_lab.corelib.outputs import atomic_output, check_output
from codec_lab.registry.runs import load_run
from codec_lab.registry.shipped_models import by_digest, resolve_for_file


def default_output(file: Path) -> Path:
    """``photo.png.cdl`` or ``photo.cdl`` → ``photo.decoded.png`` in the current folder.

    Never the name of the original image: decoding next to a photo must not replace it.
    """
    stem = Path(file.name[:-4] if file.name.lower().endswith(".cdl") else file.stem)
    if stem.suffix.lower() in IMAGE_SUFFIXES:
        stem = Path(stem.stem)
    return Path(f"{stem.name or 'image'}.decoded.png")


@handle_errors
def decompress(
    file: Annotated[Path, typer.Argument(help="File written by `codec compress`.")],
    model: Model = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o",
        help="Image to write; the format follows the suffix (default: <stem>.decoded.png in "
             "the current folder: photo.png.cdl → photo.decoded.png).")] = None,
    force: Force = False,
    device: Device = "auto",
    max_pixels: Annotated[int | None, typer.Option(
        "--max-pixels", min=1,
        help="Refuse files claiming a larger image (height x width); default $CODEC_MAX_PIXELS "
             "or 268435456 (2**28).")] = None,
) -> None:
    """Restore an image from a compressed file.

    With no --model, the shipped model that made the file is found by the model digest in
    its header (`codec models`); a file made with your own run needs --model RUN.

    An existing output file is refused unless --force is given.

    Examples:
      codec decompress photo.cdl -o photo.decoded.png
      codec decompress photo.cdl --model runs/admm1 -o photo-decoded.png
    """
    target = check_output(output or default_output(file), force, inputs=[file])
    data = read_compressed(file)
    header, _ = unpack(data, str(file), max_pixels)  # a damaged file is refused before any model loads
    chosen = resolve_for_file(model, header.digest, str(file))
    dev = resolve_device(device)
    codec = load_run(chosen.path).to(dev)
    maker = by_digest(header.digest) if codec.weights_digest() != header.digest else None
    if maker is not None:  # the decoder's own error cannot name the shipped model that fits
        raise BitstreamError(f"{file} was made by shipped model {maker.name!r}, not by {chosen.label}",
                             f"pass --model {maker.name}, or no --model")  # fmt: skip
    # 8-bit pixels written tile by tile: no full-size float image at any size; a PNG is
    # written a tile row at a time, without the whole image in memory.
    if image_format(target) == "PNG":
        with atomic_output(target, overwrite=force) as tmp, tmp.open("wb") as fh:
            h, w = decode_to_png(codec, data, fh, str(file), max_pixels=max_pixels)
    else:
        pixels = decode_image(codec, data, str(file), max_pixels=max_pixels)
        save_image(pixels, target, overwrite=force)
        w, h = pixels.size
    out.print(f"{file} → {target} ({w}x{h}, {len(data) * 8 / (h * w):.4f} bpp)", highlight=False)
