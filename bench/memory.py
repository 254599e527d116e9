"""Peak memory and time per pixel of ``codec compress`` / ``decompress`` from 256² to 50 MP.

    python -m bench.memory --model RUN [--sizes 256x256,1024x1024,…] [--untiled-max 17e6]
                           [--md out.md] [--plot bench/out/memory.png]

Each size runs in fresh processes (one to compress, one to decompress), as the CLI runs them:
the image is read from a PNG row by row (``open_for_coding``, as ``codec compress`` reads it),
coded tile by tile (``encode_image`` with the default tiles: 1024 pixels, 512 for images
larger than one such tile) and written; the file is decoded into a PNG a tile row at a time
(``decode_to_png``, as ``codec decompress`` does).
Reported per size: the process's peak RSS (``ru_maxrss``: imports, model and all), the peak
above the process once set up (imports and model loaded), and the seconds from reading the
input to writing the output — per megapixel, and as a ratio to the smallest size's (the
issue's target: ≤ 1.2 up to 50 MP, peak RSS ≤ 1.5 GB at 50 MP). The same is measured untiled
(``--tile 0``, the whole image at once) up to ``--untiled-max`` pixels as the reference.

The test images are a Kodak photo mirrored into a seamless mosaic (every copy flipped against
its neighbours) and cropped to size, so they code like photos; they are built in 8 bits and
written once per size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench._common import kodak, machine, print_table

SIZES = "256x256,1024x1024,2048x2048,4096x4096,5774x8660"
"""(height x width) of the test images: 65 kP, 1 MP, 4 MP, 16.8 MP, 50 MP."""

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
from codec_lab.corelib.files import decode_to_png, encode_image
from codec_lab.corelib.images import open_for_coding
from codec_lab.registry.runs import load_run

mode, run, src, dst, tile = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
tile = None if tile < 0 else tile  # -1: the default tile size
codec = load_run(run)
codec.weights_digest()
setup_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if mode == "compress":
    pixels, _ = open_for_coding(src)
    data = encode_image(codec, pixels, tile=tile)
    open(dst, "wb").write(data)
else:  # as codec decompress writes a PNG: a tile row at a time
    with open(dst, "wb") as fh:
        decode_to_png(codec, open(src, "rb").read(), fh)
seconds = time.perf_counter() - t0
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_kb": peak_kb, "setup_kb": setup_kb}))
"""


def mosaic(source: Path, h: int, w: int) -> np.ndarray:
    """An (h, w, 3) uint8 image: ``source`` and its mirror images tiled without seams."""
    with Image.open(source) as im:
        a = np.asarray(im.convert("RGB"))
    block = np.concatenate([a, a[::-1]], 0)
    block = np.concatenate([block, block[:, ::-1]], 1)
    reps = (-(-h // block.shape[0]), -(-w // block.shape[1]), 1)
    return np.tile(block, reps)[:h, :w]


def _child(mode: str, run: Path, src: Path, dst: Path, tile: int, threads: int) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-c", CHILD, str(threads), mode, str(run), str(src), str(dst), str(tile)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} of {src.name} (tile {tile}) failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(run: Path, sizes: list[tuple[int, int]], untiled_max: float, threads: int,
            folder: Path, tile: int = -1) -> list[dict[str, float]]:  # fmt: skip
    """One record per (size, tiled or untiled, compress or decompress)."""
    source = kodak(1)[0]
    tiled_flag = tile  # -1: the model's default tile size
    records = []
    for h, w in sizes:
        png = folder / f"img-{h}x{w}.png"
        Image.fromarray(mosaic(source, h, w)).save(png, compress_level=1)
        for tile in [None, 0] if h * w <= untiled_max else [None]:
            flag = tiled_flag if tile is None else tile
            cdl, out = folder / f"img-{h}x{w}-{flag}.cdl", folder / f"img-{h}x{w}-{flag}.png"
            for mode, src, dst in [("compress", png, cdl), ("decompress", cdl, out)]:
                r = _child(mode, run, src, dst, flag, threads)
                rec = {"pixels": h * w, "size": f"{w}x{h}", "tiled": tile is None, "mode": mode,
                       "seconds": r["seconds"], "peak_mb": r["peak_kb"] / 1024,
                       "coding_mb": (r["peak_kb"] - r["setup_kb"]) / 1024,
                       "bytes": cdl.stat().st_size}  # fmt: skip
                records.append(rec)
                print(f"  {rec['size']} {'tiled' if rec['tiled'] else 'untiled'} {mode}: "
                      f"{rec['seconds']:.1f} s, peak {rec['peak_mb']:.0f} MB", file=sys.stderr, flush=True)
            out.unlink(missing_ok=True)
            cdl.unlink(missing_ok=True)
        png.unlink()
    return records


def table(records: list[dict[str, float]]) -> str:
    """Print the table and return it as Markdown."""
    first = {(r["mode"], r["tiled"]): r["seconds"] / r["pixels"] for r in records
             if r["pixels"] == min(x["pixels"] for x in records)}  # fmt: skip
    rows = []
    for r in records:
        per_mp = r["seconds"] / r["pixels"] * 1e6
        ratio = r["seconds"] / r["pixels"] / first[r["mode"], r["tiled"]]
        rows.append([r["size"], f"{r['pixels'] / 1e6:.2f}", "tiled" if r["tiled"] else "untiled", r["mode"],
                     f"{r['peak_mb']:,.0f}", f"{r['coding_mb']:,.0f}", f"{r['seconds']:.1f}", f"{per_mp:.2f}",
                     f"{ratio:.2f}", f"{r['bytes'] * 8 / r['pixels']:.4f}"])  # fmt: skip
    return print_table(
        f"Memory and time per pixel; {machine()}",
        ["size", "MP", "path", "command", "peak RSS MB", "above setup MB", "seconds", "s/MP", "vs smallest",
         "bpp"],
        rows,
    )  # fmt: skip


def plot(records: list[dict[str, float]], path: Path) -> None:
    """Peak RSS and seconds per megapixel against pixels, tiled and untiled, both commands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_mem, ax_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    for tiled in (True, False):
        for mode, marker in (("compress", "o"), ("decompress", "s")):
            rs = [r for r in records if r["tiled"] == tiled and r["mode"] == mode]
            if not rs:
                continue
            px = [r["pixels"] / 1e6 for r in rs]
            label = f"{mode}, {'1024-px tiles' if tiled else 'untiled'}"
            style = "-" if tiled else "--"
            ax_mem.plot(px, [r["peak_mb"] / 1024 for r in rs], style, marker=marker, label=label)
            per_mp = [r["seconds"] / r["pixels"] * 1e6 for r in rs]
            ax_time.plot(px, per_mp, style, marker=marker, label=label)
    ax_mem.axhline(1.5, color="grey", lw=0.8, ls=":")
    ax_mem.set(xscale="log", xlabel="megapixels", ylabel="peak RSS (GB)", title="Peak memory")
    ax_time.set(xscale="log", xlabel="megapixels", ylabel="seconds per megapixel", title="Time per pixel")
    ax_time.set_ylim(bottom=0)
    ax_mem.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="run folder")
    parser.add_argument("--sizes", default=SIZES, help=f"HxW,HxW,… (default {SIZES})")
    parser.add_argument("--untiled-max", type=float, default=17e6, help="largest untiled reference (pixels)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tile", type=int, default=-1, help="tiled runs' tile size (default: the model's)")
    parser.add_argument("--md", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--json", type=Path, help="also write the records as JSON here")
    parser.add_argument("--plot", type=Path, default=Path("bench/out/memory.png"))
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="codec-memory-") as tmp:
        records = measure(args.model, sizes, args.untiled_max, args.threads, Path(tmp),  # type: ignore[arg-type]
                          args.tile)
    md = table(records)
    if args.md:
        args.md.write_text(md)
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    plot(records, args.plot)
    print(f"Wrote {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
