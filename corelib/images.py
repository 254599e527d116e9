"""Reading and writing images: any size, PNG/JPEG/..., converted to RGB with a notice."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from codec_lab.corelib.container import max_pixels_limit
from codec_lab.corelib.errors import DataError, ImageError
from codec_lab.corelib.outputs import atomic_output
from codec_lab.corelib.png_stream import PngRowReader

__all__ = [
    "IMAGE_SUFFIXES",
    "SAMPLE_SPLITS",
    "image_format",
    "image_pixels",
    "list_images",
    "load_array",
    "load_image",
    "open_for_coding",
    "open_rgb",
    "sample_images",
    "save_image",
    "to_uint8",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def _gray_to_8bit(a: np.ndarray) -> np.ndarray:
    """16-bit (or int/float) gray to 8 bits by scaling; Pillow's convert() would clip at 255."""
    peak = float(a.max(initial=0))
    if a.dtype.kind == "f" and peak <= 1.0:
        top = 1.0
    else:
        top = 255.0 if peak <= 255 else 65535.0  # an "I" image may hold 8-bit values
    return np.clip(np.round(a.astype(np.float64) / top * 255), 0, 255).astype(np.uint8)


def _sixteen_bit(im: Image.Image) -> bool:
    """Whether Pillow reads 16 bits per channel that it reduces to 8 (a 48-bit RGB PNG opens
    as mode "RGB" with raw mode "RGB;16B": only the tile descriptors tell)."""
    for t in getattr(im, "tile", None) or []:
        args = t.args if isinstance(t.args, str) else (t.args[0] if t.args else "")
        if isinstance(args, str) and ";16" in args:
            return True
    return False


def _too_large(p: Path, size: str | None, pixels: int | None, limit: int) -> ImageError:
    if size:
        what = f"is {size} ({pixels:,} pixels)"
    else:
        what = f"has {pixels:,} pixels" if pixels else "is too large"
    return ImageError(
        f"image {p} {what}, over the limit of {limit:,} pixels",
        "if the image is trusted, raise the limit (--max-pixels N or CODEC_MAX_PIXELS=N)",
    )


def _to_rgb(im: Image.Image, p: Path, limit: int) -> tuple[Image.Image, str | None]:
    """Decode an opened image within the pixel limit and convert it to 8-bit RGB, with a notice."""
    w, h = im.size
    if w * h > limit:
        raise _too_large(p, f"{w}x{h}", w * h, limit)
    deep = _sixteen_bit(im)  # before load(), which clears the tile descriptors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im.load()
    # A 16-bit gray mode names its depth itself ("I;16"); Pillow's 48-bit RGB does not.
    sixteen = deep and not im.mode.startswith(("I", "F"))
    if im.mode == "RGB" and not sixteen:
        return im, None
    source = f"16-bit {im.mode}" if sixteen else im.mode
    notice = f"{p.name}: converted {source} to RGB"
    if deep:
        notice += " (16 bits per channel reduced to 8)"
    if im.mode.startswith("I") or im.mode == "F":
        im = Image.fromarray(_gray_to_8bit(np.asarray(im)), "L").convert("RGB")
    elif im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        notice += " (transparency dropped onto white)"
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba).convert("RGB")
    elif im.mode != "RGB":
        im = im.convert("RGB")
    return im, notice


def open_rgb(path: str | Path, max_pixels: int | None = None) -> tuple[Image.Image, str | None]:
    """Read an image as a decoded 8-bit RGB Pillow image (what the file path codes from: Pillow
    keeps 4 bytes a pixel, and tiles are read from it without another full-size copy).

    Args:
        max_pixels: refuse images with more pixels (default ``$CODEC_MAX_PIXELS`` or 2**28,
            see ``container.max_pixels_limit``). Pillow's decompression-bomb guard is set to
            the same limit, so this limit is the one that applies.

    Returns:
        The image (mode "RGB") and a notice when it was converted (RGBA, grayscale, palette,
        16 bits per channel…).

    Raises:
        ImageError: missing, unreadable, or over the pixel limit (one line, with how to raise it).
    """
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image {p} does not exist", "check the path")
    if p.is_dir():
        raise ImageError(f"{p} is a folder, not an image", "pass an image file")
    limit = max_pixels_limit(max_pixels)
    # Pillow refuses images over twice its limit at open and warns above it: with our limit as
    # its own, an image over ours is refused by us (below) or by it (caught here), never later.
    before, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limit  # Pillow's global: restored below
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(p)
        try:
            im, notice = _to_rgb(opened, p, limit)
        except BaseException:
            opened.close()
            raise
    except Image.DecompressionBombError as e:  # Pillow's guard, at twice its (our) limit
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise _too_large(p, None, int(found.group(1)) if found else None, limit) from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(f"cannot read image {p}: {e}", "pass a PNG or JPEG image") from e
    finally:
        Image.MAX_IMAGE_PIXELS = before
    if im is not opened:
        opened.close()
    return im, notice


_ROWS_FROM = 1 << 20
"""PNGs above this many pixels (a 1024 x 1024 tile) are read row by row."""


def open_for_coding(
    path: str | Path, max_pixels: int | None = None
) -> tuple[Image.Image | PngRowReader, str | None]:
    """Open an image to compress: a non-interlaced 8-bit RGB PNG of over a megapixel as a
    :class:`PngRowReader` (rows are decoded as the tiles need them: a 50-megapixel PNG never
    sits in memory whole), anything else as :func:`open_rgb` does. Both give the same pixels.

    Raises:
        ImageError: as :func:`open_rgb`.
    """
    p = Path(path)
    reader = PngRowReader.open(p) if p.is_file() else None
    if reader is not None and reader.width * reader.height <= _ROWS_FROM:
        reader.close()  # small enough to decode whole, faster (no compiled unfilter to load)
        reader = None
    if reader is None:
        return open_rgb(p, max_pixels)
    h, w = reader.size
    limit = max_pixels_limit(max_pixels)
    if w * h > limit:
        reader.close()
        raise _too_large(p, f"{w}x{h}", w * h, limit)
    return reader, None


def load_array(path: str | Path, max_pixels: int | None = None) -> tuple[np.ndarray, str | None]:
    """Read an image as an (H, W, 3) uint8 array (read-only): :func:`open_rgb`'s pixels.

    Raises:
        ImageError: as :func:`open_rgb`.
    """
    im, notice = open_rgb(path, max_pixels)
    return np.asarray(im, dtype=np.uint8), notice


def load_image(path: str | Path, max_pixels: int | None = None) -> tuple[torch.Tensor, str | None]:
    """Read an image as a (1, 3, H, W) float tensor in [0, 1] (:func:`open_rgb`, converted).

    Returns:
        The tensor and a notice when the image was converted (RGBA, grayscale, palette…).

    Raises:
        ImageError: as :func:`open_rgb`.
    """
    arr, notice = load_array(path, max_pixels)
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255.0)
    return x[None], notice


def image_pixels(path: str | Path) -> int:
    """Width × height of an image file, read from its header (the pixels are not decoded)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(f"cannot read image {path}: {e}", "pass a PNG or JPEG image") from e
    return w * h


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float in [0, 1] → (H, W, 3) uint8, rounded as CompressAI does."""
    if x.dim() == 4:
        x = x[0]
    return x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def image_format(path: str | Path) -> str:
    """The Pillow format a path's suffix names (PNG when there is none or it is unknown)."""
    return Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")


def save_image(x: torch.Tensor | np.ndarray | Image.Image, path: str | Path, *,
               overwrite: bool = False) -> None:  # fmt: skip
    """Write an image atomically; the format follows the suffix (PNG when there is none).

    Args:
        x: a float tensor in [0, 1] (see :func:`to_uint8`), an (H, W, 3) uint8 array, or a
            Pillow image (written as it is).
        overwrite: replace an existing file (refused otherwise).
    """
    target = Path(path)
    fmt = image_format(target)
    if isinstance(x, Image.Image):
        im = x
    else:
        im = Image.fromarray(x if isinstance(x, np.ndarray) else to_uint8(x))
    with atomic_output(target, overwrite=overwrite) as tmp:
        im.save(tmp, format=fmt)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted; a clear error if there are none."""
    p = Path(folder)
    if not p.exists():
        raise DataError(f"data folder {p} does not exist", "check the path")
    if not p.is_dir():
        raise DataError(f"{p} is not a folder", "pass a folder of images")
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise DataError(f"no images in {p}", f"put {'/'.join(IMAGE_SUFFIXES)} files there")
    return files


SAMPLE_SPLITS = ("train", "held-out")
"""Folders of the shipped samples: training images, and images never trained on."""


def sample_images(split: str | None = None) -> list[Path]:
    """The small Kodak crops shipped with the package (Kodak: released for unrestricted use).

    Args:
        split: ``train``, ``held-out`` (evaluated after a build, never trained on), or None
            for all of them.
    """
    root = Path(__file__).parent / "samples"
    if split is not None:
        return list_images(root / split)
    return sorted((p for s in SAMPLE_SPLITS for p in list_images(root / s)), key=lambda p: p.name)
