"""Tiled against untiled coding on Kodak: PSNR difference and seam visibility.

    python -m bench.seams --model /tmp/x/admm --model /tmp/x/importance --tile 256 --tile 128 [--md out.md]

Every Kodak image is coded as one tile (``--tile 0`` of ``codec compress``) and in tiles of each
``--tile`` size (768x512 in 256-pixel tiles: 3x2 tiles, seams through the picture), through real
files. Reported per model and tile size, means over the images:

* **ΔPSNR** — PSNR of the tiled reconstruction minus the untiled one (the issue's target:
  within ±0.05 dB), and the largest |ΔPSNR| of any image;
* **ΔPSNR at seams** — the same in a band of 8 pixels centred on the tile seams only: a visible
  seam would show here first;
* **seam / rest** — the tiled reconstruction's mean squared error in the seam band over its
  error elsewhere (1.0: seams are no worse than the rest of the picture), next to the untiled
  reconstruction's ratio over the same band;
* **changed px** — the fraction of 8-bit samples the tiled reconstruction changes, and **Δbytes**
  the file size change (per-tile payloads, CRCs and coder restarts).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from bench._common import kodak, machine, mean, print_table
from codec_lab.corelib.files import decode_array, encode_image
from codec_lab.corelib.images import load_array
from codec_lab.corelib.tiling import halos
from codec_lab.registry.runs import load_run

BAND = 4
"""Pixels on each side of a seam counted as the seam band."""


def _psnr(mse: float) -> float:
    return 10 * math.log10(255.0**2 / mse) if mse > 0 else float("inf")


def seam_band(shape: tuple[int, int], tile: int, band: int = BAND) -> np.ndarray:
    """Boolean (H, W) map of the pixels within ``band`` of an interior tile seam."""
    h, w = shape
    rows = np.zeros(h, bool)
    cols = np.zeros(w, bool)
    for s in range(tile, h, tile):
        rows[max(0, s - band) : s + band] = True
    for s in range(tile, w, tile):
        cols[max(0, s - band) : s + band] = True
    return rows[:, None] | cols[None, :]


def _sq_err(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(-1)


def measure(model: Path, tiles: list[int], images: list[Path]) -> list[list[object]]:
    """One table row per tile size for ``model``."""
    codec = load_run(model).eval()
    digest = codec.weights_digest()
    rows = []
    per_tile: dict[int, dict[str, list[float]]] = {t: {} for t in tiles}
    for path in images:
        x, _ = load_array(path)
        ref_data = encode_image(codec, x, digest, tile=0)
        ref = decode_array(codec, ref_data, digest=digest)
        ref_err = _sq_err(x, ref)
        for t in tiles:
            data = encode_image(codec, x, digest, tile=t)
            out = decode_array(codec, data, digest=digest)
            err = _sq_err(x, out)
            band = seam_band(x.shape[:2], t)
            acc = per_tile[t]
            for key, value in {
                "dpsnr": _psnr(err.mean()) - _psnr(ref_err.mean()),
                "dpsnr_seam": _psnr(err[band].mean()) - _psnr(ref_err[band].mean()),
                "ratio": err[band].mean() / err[~band].mean(),
                "ratio_ref": ref_err[band].mean() / ref_err[~band].mean(),
                "changed": float((out != ref).mean()),
                "dbytes": (len(data) - len(ref_data)) / len(ref_data),
            }.items():
                acc.setdefault(key, []).append(value)
    enc, dec = halos(codec)
    for t in tiles:
        acc = per_tile[t]
        rows.append([
            model.name, t, f"{enc} px / {dec} lat", f"{mean(acc['dpsnr']):+.4f}",
            f"{max(abs(v) for v in acc['dpsnr']):.4f}", f"{mean(acc['dpsnr_seam']):+.4f}",
            f"{mean(acc['ratio']):.3f} ({mean(acc['ratio_ref']):.3f})", f"{100 * mean(acc['changed']):.2f} %",
            f"{100 * mean(acc['dbytes']):+.2f} %",
        ])  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True, help="run folder (repeatable)")
    parser.add_argument("--tile", type=int, action="append", help="tile size (repeatable; default 256)")
    parser.add_argument("--images", type=int, default=None, help="first N Kodak images (default all)")
    parser.add_argument("--md", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    images = kodak(args.images)
    rows = []
    for model in args.model:
        rows += measure(model, args.tile or [256], images)
    md = print_table(
        f"Tiled vs untiled on Kodak ({len(images)} images); {machine()}",
        ["model", "tile", "halos", "ΔPSNR dB", "max |ΔPSNR|", "ΔPSNR seams", "seam/rest MSE (untiled)",
         "changed px", "Δbytes"],
        rows,
    )  # fmt: skip
    if args.md:
        args.md.write_text(md)


if __name__ == "__main__":
    main()
