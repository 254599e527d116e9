"""``codec compress``: image → compressed file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codec_lab.cli._options import Device, Force
from codec_lab.cli._output import err, handle_errors, out
from codec_lab.corelib.devices import resolve_device
from codec_lab.corelib.files import encode_image
from codec_lab.corelib.images import load_image
from codec_lab.corelib.outputs import atomic_output, check_output
from codec_lab.registry.runs import load_run


def default_output(image: Path) -> Path:
    """``photo.png`` → ``photo.png.cdl`` in the current folder (``photo.jpg`` gets its own)."""
    return Path(f"{image.name}.cdl")


@handle_errors
def compress(
    image: Annotated[Path, typer.Argument(help="Image to compress (PNG, JPEG, …; any size).")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Run folder from `codec build`.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o",
        help="Compressed file to write (default: the image's file name + .cdl, in the current "
             "folder: photo.png → photo.png.cdl).")] = None,
    force: Force = False,
    device: Device = "auto",
) -> None:
    """Compress an image into a real file with a trained codec.

    An existing output file is refused unless --force is given.

    Example:
      codec compress photo.png --model runs/admm1 -o photo.cdl
    """
    target = check_output(output or default_output(image), force, inputs=[image])
    dev = resolve_device(device)
    x, notice = load_image(image)
    codec = load_run(model).to(dev)
    if notice:
        err.print(f"Notice: {notice}", highlight=False)
    data = encode_image(codec, x.to(dev))
    with atomic_output(target, overwrite=force) as tmp:
        tmp.write_bytes(data)
    h, w = x.shape[-2:]
    size = target.stat().st_size
    out.print(f"{image} → {target}: {size:,} bytes, {size * 8 / (h * w):.4f} bpp ({w}x{h})",
              highlight=False)
