"""Reading and writing images: any size, PNG/JPEG/..., converted to RGB with a notice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from codec_lab.corelib.errors import DataError, ImageError
from codec_lab.corelib.outputs import atomic_output

__all__ = [
    "IMAGE_SUFFIXES",
    "SAMPLE_SPLITS",
    "image_pixels",
    "list_images",
    "load_image",
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


def load_image(path: str | Path) -> tuple[torch.Tensor, str | None]:
    """Read an image as a (1, 3, H, W) float tensor in [0, 1].

    Returns:
        The tensor and a notice when the image was converted (RGBA, grayscale, palette…).
    """
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image {p} does not exist", "check the path")
    if p.is_dir():
        raise ImageError(f"{p} is a folder, not an image", "pass an image file")
    try:
        with Image.open(p) as im:
            im.load()
            notice = None
            if im.mode != "RGB":
                notice = f"{p.name}: converted {im.mode} to RGB"
                if im.mode.startswith("I") or im.mode == "F":
                    im = Image.fromarray(_gray_to_8bit(np.asarray(im)), "L").convert("RGB")
                elif im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                    notice += " (transparency dropped onto white)"
                    rgba = im.convert("RGBA")
                    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    im = Image.alpha_composite(bg, rgba).convert("RGB")
                else:
                    im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(f"cannot read image {p}: {e}", "pass a PNG or JPEG image") from e
    x = torch.from_numpy(arr).permute(2, 0, 1).float().div(255.0)
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


def save_image(x: torch.Tensor, path: str | Path, *, overwrite: bool = False) -> None:
    """Write an image atomically; the format follows the suffix (PNG when there is none).

    An existing file is refused unless ``overwrite``.
    """
    target = Path(path)
    fmt = Image.registered_extensions().get(target.suffix.lower(), "PNG")
    with atomic_output(target, overwrite=overwrite) as tmp:
        Image.fromarray(to_uint8(x)).save(tmp, format=fmt)


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
