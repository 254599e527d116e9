"""``codec decompress``: compressed file → image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._output import handle_errors, out
from corelib.files import decode_bytes, read_compressed
from corelib.images import save_image
from registry.runs import load_run


@handle_errors
def decompress(
    file: Annotated[Path, typer.Argument(help="File written by `codec compress`.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Run folder that made the file.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Image to write (default: FILE name + .png).")] = None,
) -> None:
    """Restore an image from a compressed file.

    Example:
      codec decompress photo.cdl --model runs/admm1 -o photo.png
    """
    data = read_compressed(file)
    codec = load_run(model)
    x_hat = decode_bytes(codec, data, str(file))
    target = output or Path(f"{file.stem}.png")
    save_image(x_hat, target)
    h, w = x_hat.shape[-2:]
    out.print(f"{file} → {target} ({w}x{h}, {len(data) * 8 / (h * w):.4f} bpp)", highlight=False)
