"""Rate-distortion on Kodak: trained runs (real files) beside the baselines at the same bpp.

The baselines are the registered classical codecs (JPEG, WebP, JPEG 2000, AVIF, and any a
plugin adds); their RD curves are drawn too. Writes a table, an RD plot (PNG) and
CompressAI-schema JSON files that ``compressai.utils.plot`` reads.

    python -m bench.rd --model runs/admm-cpu [--model runs/other ...] [--images 24] \
        [--out bench/out] [--codecs jpeg,webp,jpeg2000,avif]

``--codecs`` names registered baselines (``codec plugins`` lists them); the default is every
baseline available here.

Run it from the repository root. "At the same bpp": for every image, each classical codec is
set to the highest quality whose file is no larger than our file for that image (or its
smallest file, when even that is larger; the bpp column shows it).

Everything here is the package's: ``evaluate`` and ``evaluate_classical`` make results, and
the renderers of ``codec_lab.corelib.render`` / ``.rdplot`` draw them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from bench._common import LineProgress, console, kodak, machine
from codec_lab.corelib.classical import evaluate_classical, sweep
from codec_lab.corelib.contracts import Baseline
from codec_lab.corelib.errors import CodecError
from codec_lab.corelib.evaluation import evaluate
from codec_lab.corelib.rdplot import Series, plot_rd
from codec_lab.corelib.render import markdown_table, terminal_table
from codec_lab.corelib.results import Results, curve_from_compressai, curve_to_compressai
from codec_lab.corelib.runs import write_json
from codec_lab.registry.components import Registry
from codec_lab.registry.runs import load_run


def _family(r: Results) -> str:
    """Runs drawn as one line: same rate strategy on the same transforms."""
    return f"{r.codec.component('rate')} · {r.codec.component('encoder')}"


def _ours(run: Path, images: list[Path], out: Path) -> Results:
    """Evaluate a run (real files) and write its JSON, named after the run folder."""
    print(f"{run}: coding {len(images)} images", file=sys.stderr, flush=True)
    ev = evaluate(load_run(run), images, LineProgress())
    ev.codec = replace(ev.codec, name=run.name, summary=f"codec-lab run {run}, real files")
    write_json(out / f"{run.name}.json", ev.to_compressai(), overwrite=True)
    return ev


def _curve(baseline: Baseline, images: list[Path], out: Path, reuse: bool) -> list[Results]:
    """A baseline's sweep, cached in ``out`` (it depends only on the images and the library)."""
    cached = out / f"{baseline.name}.json"
    desc = (f"{baseline.library()} {baseline.setting.label} sweep (baseline {baseline.name} "
            f"{baseline.version}) on Kodak ({len(images)} images)")  # fmt: skip
    if reuse and cached.is_file():
        doc = json.loads(cached.read_text())
        if doc.get("description") == desc:
            return curve_from_compressai(doc)
    print(f"{baseline.name}: sweeping {len(baseline.sweep)} settings", file=sys.stderr, flush=True)
    points = sweep(baseline, images)
    write_json(cached, curve_to_compressai(points, baseline.name, desc), overwrite=True)
    return points


def _plot(curves: dict[str, list[Results]], ours: list[Results], out: Path, n_images: int) -> Path:
    """Baseline curves as lines; our runs as named points joined per family."""
    series = [Series(c, pts) for c, pts in curves.items()]
    for family in dict.fromkeys(_family(r) for r in ours):
        series.append(Series(f"{family} (ours)", [r for r in ours if _family(r) == family], annotate=True))
    return plot_rd(series, out / "rd_kodak.png", title=f"Kodak ({n_images} images)", max_bpp=1.0,
                   overwrite=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", type=Path, default=[], help="run folder (repeatable)")
    ap.add_argument("--images", type=int, default=None, help="first N Kodak images (default all)")
    ap.add_argument("--codecs", default=None,
                    help="baselines, comma-separated (default: every one available here)")
    ap.add_argument("--out", type=Path, default=Path("bench/out"), help="folder for PNG/JSON/MD")
    ap.add_argument("--reuse-curves", action="store_true",
                    help="reuse the classical sweeps already in --out (they depend only on the images)")
    ap.add_argument("--plot-only", action="store_true",
                    help="redraw the plot from the JSON files an earlier run wrote in --out")
    args = ap.parse_args()
    registry = Registry()
    if args.codecs is None:
        names = [n for n in registry.baseline_names() if registry.baseline_unavailable(n) is None]
    else:
        names = [c.strip() for c in args.codecs.split(",") if c.strip()]
    try:
        baselines = {b.name: b for b in (registry.baseline(n) for n in names)}
    except CodecError as e:
        ap.error(str(e))
    codecs = list(baselines)
    args.out.mkdir(parents=True, exist_ok=True)
    images = kodak(args.images)

    if args.plot_only:
        curves = {c: curve_from_compressai(json.loads((args.out / f"{c}.json").read_text())) for c in codecs}
        ours = [Results.from_compressai(json.loads((args.out / f"{run.name}.json").read_text()))
                for run in args.model]  # fmt: skip
        print(f"wrote {_plot(curves, ours, args.out, len(images))}")
        return

    md_parts = []
    ours, matched, labels = [], [], []
    for run in args.model:
        ev = _ours(run, images, args.out)
        ours.append(ev)
        matched.append(ev)
        labels.append(run.name)
        for c in codecs:
            budgets = [r["bytes"] for r in ev.rows]
            matched.append(evaluate_classical(baselines[c], images, max_bytes=budgets,
                                              progress=LineProgress()))  # fmt: skip
            labels.append(f"{c} at ≤ same bytes")
    if matched:
        title = f"Kodak ({len(images)} images), matched bpp — {machine()}"
        console.print(terminal_table(matched, title, labels))
        md_parts.append(f"### {title}\n\n{markdown_table(matched, labels)}")

    curves = {c: _curve(b, images, args.out, args.reuse_curves) for c, b in baselines.items()}
    # The sweeps up to 1 bpp, one row per setting (its declared column: quality or ratio).
    points = [(c, p) for c, pts in curves.items() for p in pts if p.mean().get("bpp", 2.0) <= 1.0]
    if points:
        title = f"Baselines (classical codecs) on Kodak ({len(images)} images, ≤ 1 bpp)"
        rows, names = [p for _, p in points], [c for c, _ in points]
        console.print(terminal_table(rows, title, names))
        md_parts.append(f"### {title}\n\n{markdown_table(rows, names)}")

    png = _plot(curves, ours, args.out, len(images))
    (args.out / "rd_kodak.md").write_text("\n\n".join(md_parts) + "\n")
    print(f"wrote {png}, {args.out / 'rd_kodak.md'} and JSON per codec")


if __name__ == "__main__":
    main()
