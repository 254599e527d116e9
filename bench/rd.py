"""Rate-distortion on Kodak: trained runs (real files) beside JPEG, WebP, JPEG 2000 and AVIF at
the same bpp, plus the classical codecs' RD curves; writes a table, an RD plot (PNG) and
CompressAI-schema JSON files that ``compressai.utils.plot`` reads.

    python bench/rd.py --model runs/admm-cpu [--model runs/other ...] [--images 24] \
        [--out bench/out] [--codecs jpeg,webp,jpeg2000,avif]

"At the same bpp": for every image, each classical codec is set to the largest quality whose
file is no larger than our file for that image (or its smallest file, when even that is larger;
the bpp column shows it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CLASSIC, classic_at_bpp, classic_point, kodak, machine, mean, print_table  # noqa: E402

from codec_lab.cli._output import BarProgress  # noqa: E402
from codec_lab.corelib.evaluation import evaluate  # noqa: E402
from codec_lab.corelib.runs import read_config  # noqa: E402
from codec_lab.registry.runs import load_run  # noqa: E402

SWEEP = {
    "jpeg": [5, 10, 15, 20, 30, 40, 50, 60, 75, 85, 95],
    "webp": [0, 5, 10, 20, 30, 40, 50, 60, 75, 90],
    "jpeg2000": [400, 200, 120, 80, 60, 48, 32, 24, 16, 12],
    "avif": [5, 10, 20, 30, 40, 50, 60, 70, 80, 90],
}


def _curve(codec: str, images: list[Path]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"bpp": [], "psnr-rgb": [], "ms-ssim-rgb": [], "ssim-rgb": []}
    for s in SWEEP[codec]:
        pts = [classic_point(p, codec, s) for p in images]
        out["bpp"].append(mean([p.bpp for p in pts]))
        out["psnr-rgb"].append(mean([p.psnr for p in pts]))
        out["ms-ssim-rgb"].append(mean([p.ms_ssim for p in pts]))
        out["ssim-rgb"].append(mean([p.ssim for p in pts]))
    order = sorted(range(len(out["bpp"])), key=lambda i: out["bpp"][i])
    return {k: [v[i] for i in order] for k, v in out.items()}


def _write_json(path: Path, name: str, description: str, results: dict[str, list[float]]) -> None:
    path.write_text(json.dumps({"name": name, "description": description, "results": results}, indent=2))


def _family(model: dict) -> str:
    """Runs drawn as one line: same rate strategy on the same transforms."""
    return f"{model['rate']['name']} · {model['encoder']['name']}"


def _plot(curves: dict, points: list, out: Path, n_images: int) -> None:
    """Classical curves as lines, our runs as points joined per family; PSNR and MS-SSIM."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, mkey, ylabel in ((axes[0], "psnr-rgb", "psnr", "PSNR (dB)"),
                                  (axes[1], "ms-ssim-rgb", "ms-ssim", "MS-SSIM")):  # fmt: skip
        for c, res in curves.items():
            ax.plot(res["bpp"], res[key], "-", marker=".", label=CLASSIC[c][0])
        # One line per strategy and network (its runs sorted by rate), each point named.
        for family in dict.fromkeys(f for _, f, _ in points):
            mine = sorted((m["bpp"], m[mkey], label) for label, f, m in points if f == family)
            ax.plot([b for b, _, _ in mine], [v for _, v, _ in mine], "o--", markersize=8,
                    label=f"{family} (ours)")
            for b, v, label in mine:
                ax.annotate(label, (b, v), fontsize=6, xytext=(4, -9), textcoords="offset points")
        ax.set_xlim(0, 1.0)
        ax.set_xlabel("bpp (real files)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Kodak ({n_images} images)")
    fig.tight_layout()
    fig.savefig(out / "rd_kodak.png", dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", type=Path, default=[], help="run folder (repeatable)")
    ap.add_argument("--images", type=int, default=None, help="first N Kodak images (default all)")
    ap.add_argument("--codecs", default="jpeg,webp,jpeg2000,avif", help="classical baselines")
    ap.add_argument("--out", type=Path, default=Path("bench/out"), help="folder for PNG/JSON/MD")
    ap.add_argument("--reuse-curves", action="store_true",
                    help="reuse the classical sweeps already in --out (they depend only on the images)")
    ap.add_argument("--plot-only", action="store_true",
                    help="redraw the plot from the JSON files an earlier run wrote in --out")
    args = ap.parse_args()
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    for c in codecs:
        if c not in CLASSIC:
            ap.error(f"unknown codec {c!r}; valid: {', '.join(CLASSIC)}")
    args.out.mkdir(parents=True, exist_ok=True)
    images = kodak(args.images)

    if args.plot_only:
        curves = {c: json.loads((args.out / f"{c}.json").read_text())["results"] for c in codecs}
        points = []
        for run in args.model:
            res = json.loads((args.out / f"{run.name}.json").read_text())["results"]
            m = {"bpp": res["bpp"][0], "psnr": res["psnr-rgb"][0], "ms-ssim": res["ms-ssim-rgb"][0]}
            points.append((run.name, _family(read_config(run)["model"]), m))
        _plot(curves, points, args.out, len(images))
        print(f"wrote {args.out / 'rd_kodak.png'}")
        return

    rows, md_parts, points = [], [], []
    for run in args.model:
        codec = load_run(run)
        print(f"{run}: coding {len(images)} images", file=sys.stderr, flush=True)
        ev = evaluate(codec, images, BarProgress())
        m = ev.mean()
        label = run.name
        points.append((label, _family(codec.config), m))
        _write_json(args.out / f"{label}.json", label, f"codec-lab run {run}, real files",
                    {k: [m[s]] for k, s in (("bpp", "bpp"), ("psnr-rgb", "psnr"),
                                             ("ms-ssim-rgb", "ms-ssim"), ("ssim-rgb", "ssim"))})  # fmt: skip
        rows.append((label, f"{m['bpp']:.4f}", f"{m['psnr']:.2f}", f"{m['ms-ssim']:.4f}",
                     f"{m['ssim']:.4f}", f"{m.get('est_bpp', float('nan')):.4f}"))  # fmt: skip
        for c in codecs:
            print(f"  {c} at the same bpp", file=sys.stderr, flush=True)
            pts = [classic_at_bpp(p, c, r["bpp"]) for p, r in zip(images, ev.rows, strict=True)]
            rows.append((f"{c} at ≤ same bpp", f"{mean([p.bpp for p in pts]):.4f}",
                         f"{mean([p.psnr for p in pts]):.2f}", f"{mean([p.ms_ssim for p in pts]):.4f}",
                         f"{mean([p.ssim for p in pts]):.4f}", "—"))  # fmt: skip
    if rows:
        md_parts.append(print_table(f"Kodak ({len(images)} images), matched bpp — {machine()}",
                                    ["codec", "bpp", "PSNR dB", "MS-SSIM", "SSIM", "est. bpp"], rows))

    curves = {}
    for c in codecs:
        cached = args.out / f"{c}.json"
        desc = f"Pillow {CLASSIC[c][0]} quality sweep on Kodak ({len(images)} images)"
        if args.reuse_curves and cached.is_file() and json.loads(cached.read_text())["description"] == desc:
            curves[c] = json.loads(cached.read_text())["results"]  # same images: same numbers
        else:
            curves[c] = _curve(c, images)
            _write_json(cached, c, desc, curves[c])
    crow = []
    for c, res in curves.items():
        for i, b in enumerate(res["bpp"]):
            if b <= 1.0:
                crow.append((c, f"{b:.3f}", f"{res['psnr-rgb'][i]:.2f}", f"{res['ms-ssim-rgb'][i]:.4f}"))
    md_parts.append(print_table("Classical codecs on Kodak (≤ 1 bpp)", ["codec", "bpp", "PSNR dB", "MS-SSIM"],
                                crow))

    _plot(curves, points, args.out, len(images))
    (args.out / "rd_kodak.md").write_text("\n\n".join(md_parts) + "\n")
    print(f"wrote {args.out / 'rd_kodak.png'}, {args.out / 'rd_kodak.md'} and JSON per codec")


if __name__ == "__main__":
    main()
