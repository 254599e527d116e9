"""How an ADMM run's 128×128 template should cover a larger image: ``periodic``, ``tile`` or
``channel`` (``model.rate.grid``), measured on Kodak with real files, one trained run for all.

    python bench/grid.py --model runs/admm-cpu [--images 24] [--md out.md]

The grid is an inference-time choice (the template, Z and U are the same), so the three rows
share weights; only how the mask is laid over the latent (and whether the network sees the
whole image or 128×128 tiles) changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import kodak, machine, print_table  # noqa: E402

from codec_lab.corelib.evaluation import evaluate  # noqa: E402
from codec_lab.registry.runs import load_run  # noqa: E402

GRIDS = ("periodic", "tile", "channel")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="an admm run folder")
    ap.add_argument("--images", type=int, default=None, help="first N Kodak images (default all)")
    ap.add_argument("--md", type=Path, default=None, help="write the Markdown table here")
    args = ap.parse_args()
    images = kodak(args.images)
    codec = load_run(args.model)
    if type(codec.rate).name != "admm":
        ap.error(f"{args.model} uses rate {type(codec.rate).name!r}; grid applies to admm runs")
    rows = []
    for grid in GRIDS:
        codec.rate.grid = grid  # tile_size follows the grid
        m = evaluate(codec, images).mean()
        rows.append((grid, f"{m['bpp']:.4f}", f"{m['est_bpp']:.4f}", f"{m['psnr']:.2f}",
                     f"{m['ms-ssim']:.4f}", f"{m['ssim']:.4f}",
                     f"{m.get('kept', float('nan')):.3f}", f"{m['enc_s']:.3f}", f"{m['dec_s']:.3f}"))
    title = f"ADMM template grid, {args.model.name} on {len(images)} Kodak images — {machine()}"
    md = print_table(title, ["grid", "bpp", "est. bpp", "PSNR dB", "MS-SSIM", "SSIM", "kept", "enc s",
                             "dec s"], rows)  # fmt: skip
    if args.md:
        args.md.write_text(f"### {title}\n\n{md}\n")


if __name__ == "__main__":
    main()
