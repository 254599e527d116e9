"""``codec compress``: image → compressed file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._output import err, handle_errors, out
from corelib.files import encode_image
from corelib.images import atomic_output, load_image
from registry.runs import load_run


@handle_errors
def compress(
    image: Annotated[Path, typer.Argument(help="Image to compress (PNG, JPEG, …; any size).")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Run folder from `codec build`.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Compressed file to write (default: IMAGE name + .cdl).")] = None,
) -> None:
    """Compress an image into a real file with a trained codec.

    Example:
      codec compress photo.png --model runs/admm1 -o photo.cdl
    """
    x, notice = load_image(image)
    codec = load_run(model)
    if notice:
        err.print(f"Notice: {notice}", highlight=False)
    target = output or Path(f"{image.stem}.cdl")
    data = encode_image(codec, x)
    with atomic_output(target) as tmp:
        tmp.write_bytes(data)
    h, w = x.shape[-2:]
    size = target.stat().st_size
    out.print(f"{image} → {target}: {size:,} bytes, {size * 8 / (h * w):.4f} bpp ({w}x{h})",
              highlight=False)
