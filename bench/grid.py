"""How an ADMM run's 128×128 template should cover a larger image: ``periodic``, ``tile`` or
``channel`` (``model.rate.grid``), measured on Kodak with real files, one trained run for all.

    python -m bench.grid --model runs/admm-cpu [--images 24] [--md out.md]

Run it from the repository root. The grid is an inference-time choice (the template, Z and U
are the same), so the three rows share weights; only how the mask is laid over the latent (and
whether the network sees the whole image or 128×128 tiles) changes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench._common import LineProgress, console, kodak, machine
from codec_lab.corelib.evaluation import evaluate
from codec_lab.corelib.render import markdown_table, terminal_table
from codec_lab.registry.runs import load_run

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
    results = []
    for grid in GRIDS:
        codec.rate.grid = grid  # tile_size follows the grid
        results.append(evaluate(codec, images, LineProgress()))
    title = f"ADMM template grid, {args.model.name} on {len(images)} Kodak images — {machine()}"
    console.print(terminal_table(results, title, labels=GRIDS))
    if args.md:
        args.md.write_text(f"### {title}\n\n{markdown_table(results, labels=GRIDS)}\n")


if __name__ == "__main__":
    main()
