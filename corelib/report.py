"""The comparison report: RD plots, BD-rate tables, per-point numbers, speed, as Markdown and HTML.

The report is built once as a list of blocks (headings, paragraphs, tables, images) and
rendered twice, to ``report.md`` and to a self-contained ``report.html`` (plots inlined), so
both show the same numbers. Every bpp of a measured point is a real file's bytes × 8 /
pixels; estimates and published numbers are labelled as such where they appear.
"""

from __future__ import annotations

import base64
import html
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

from codec_lab.corelib.bdrate import BDResult, Method, bd_quality, bd_rate
from codec_lab.corelib.comparison import Curve, Point
from codec_lab.corelib.contracts.base import ReportColumn
from codec_lab.corelib.rdplot import Series, plot_rd
from codec_lab.corelib.results import curve_to_compressai
from codec_lab.corelib.runs import write_json, write_text

__all__ = ["Block", "confidence_interval", "report_blocks", "to_html", "to_markdown", "write_report"]

PLOTS = {"psnr": "rd_psnr.png", "ms-ssim-db": "rd_msssim.png"}
"""Metric → file name of its RD plot."""

_METRIC_UNITS = {"psnr": ("PSNR", "dB"), "ms-ssim-db": ("MS-SSIM", "dB")}


@dataclass
class Block:
    """One piece of the report.

    Attributes:
        kind: ``h1``, ``h2``, ``p`` (paragraph), ``code``, ``table`` or ``image``.
        text: the text (heading, paragraph, code; an image's caption).
        headers, rows: a table's cells.
        path: an image file (relative to the report folder).
    """

    kind: str
    text: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    path: str = ""


def confidence_interval(values: Sequence[float], level: float = 0.95,
                        bounds: tuple[float, float] | None = None) -> tuple[float, float, float] | None:
    """(mean, low, high) of the mean of ``values`` (Student t, clipped to ``bounds``: with few
    images the t interval of a fraction reaches past 0 and 1), or None with fewer than 2 values."""
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if len(vals) < 2:
        return None
    mean = statistics.fmean(vals)
    t = float(stats.t.ppf(0.5 + level / 2, len(vals) - 1))
    half = t * statistics.stdev(vals) / math.sqrt(len(vals))
    lo, hi = bounds if bounds is not None else (-math.inf, math.inf)
    return mean, max(mean - half, lo), min(mean + half, hi)


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, spec)


def _setting(p: Point) -> str:
    """``keep=0.1`` from ``{"model.rate.keep": 0.1}``."""
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v:g}" if isinstance(v, float)
                     else f"{k.rsplit('.', 1)[-1]}={v}" for k, v in p.setting.items()) or "—"  # fmt: skip


def _label(c: Curve) -> str:
    """Published curves are marked in every table (their labels may not say so)."""
    return c.label if c.kind != "published" or "published" in c.label else f"{c.label} *(published)*"


def _bd_cell(r: BDResult, unit: str) -> str:
    return r.text(unit) if r.value is None else f"{r.text(unit)} ({r.detail(unit)})"


def _bd_table(curves: Sequence[Curve], anchor: Curve, method: Method) -> Block:
    headers = ["curve"]
    for metric in PLOTS:
        name, unit = _METRIC_UNITS[metric]
        headers += [f"BD-rate ({name})", f"BD-{name} ({unit})"]
    rows = []
    for c in curves:
        if c is anchor:
            continue
        row = [_label(c)]
        for metric in PLOTS:
            a, t = anchor.pairs(metric), c.pairs(metric)
            row += [_bd_cell(bd_rate(a, t, method), "dB"), _bd_cell(bd_quality(a, t, method), "dB")]
        rows.append(row)
    return Block("table", headers=headers, rows=rows)


def _points_table(curves: Sequence[Curve], learned: bool = True) -> Block:
    headers = ["curve", "setting", "bpp (file)", "est. bpp", "est./real", "PSNR", "MS-SSIM", "MS-SSIM dB",
               "enc s", "dec s", "train s"]  # fmt: skip
    keep = range(len(headers)) if learned else [0, 1, 2, 5, 6, 7, 8, 9]
    rows = []
    for c in curves:
        for p in c.sorted_points():
            m = p.mean()
            est, real = m.get("est_bpp"), m.get("bpp")
            ratio = f"{(est / real - 1) * 100:+.1f} %" if est is not None and real else "—"
            rows.append([c.label, _setting(p), _fmt(real, ".4f"), _fmt(est, ".4f"), ratio,
                         _fmt(m.get("psnr"), ".2f"), _fmt(m.get("ms-ssim"), ".4f"),
                         _fmt(m.get("ms-ssim-db"), ".2f"), _fmt(m.get("enc_s"), ".3f"),
                         _fmt(m.get("dec_s"), ".3f"), _fmt(p.train_s, ".0f")])  # fmt: skip
    return Block("table", headers=[headers[i] for i in keep], rows=[[r[i] for i in keep] for r in rows])


def _published_table(curves: Sequence[Curve]) -> Block:
    rows = []
    for c in curves:
        for p in c.sorted_points():
            m = p.mean()
            rows.append([c.label, _fmt(m.get("bpp"), ".4f"), _fmt(m.get("psnr"), ".2f"),
                         _fmt(m.get("ms-ssim"), ".4f"), _fmt(m.get("ms-ssim-db"), ".2f")])  # fmt: skip
    return Block("table", headers=["curve", "bpp (as published)", "PSNR", "MS-SSIM", "MS-SSIM dB"], rows=rows)


def _declared_table(curves: Sequence[Curve], level: float) -> Block | None:
    """Each declared per-image statistic of every point: mean and confidence interval."""
    rows = []
    for c in curves:
        for p in c.sorted_points():
            cols: Sequence[ReportColumn] = p.results.codec.columns
            for col in cols:
                ci = confidence_interval([r.get(col.key) for r in p.results.rows], level, col.bounds)
                if ci is None:
                    continue
                mean, lo, hi = ci
                rows.append([c.label, _setting(p), f"{col.label}", _fmt(mean, col.fmt),
                             f"[{_fmt(lo, col.fmt)}, {_fmt(hi, col.fmt)}]", str(len(p.results.rows)),
                             col.help])  # fmt: skip
    if not rows:
        return None
    return Block("table", headers=["curve", "setting", "statistic", "mean", f"{level:.0%} CI", "images",
                                   "meaning"], rows=rows)  # fmt: skip


def _speed_table(curves: Sequence[Curve], anchor: Curve) -> Block:
    def per_image(c: Curve, key: str) -> float | None:
        vals = [r[key] for p in c.points for r in p.results.rows if isinstance(r.get(key), (int, float))]
        return statistics.fmean(vals) if vals else None

    def pixels(c: Curve) -> float | None:
        vals = [r["width"] * r["height"] for p in c.points for r in p.results.rows if "width" in r]
        return statistics.fmean(vals) if vals else None

    ref = {k: per_image(anchor, k) for k in ("enc_s", "dec_s")}
    rows = []
    for c in curves:
        enc, dec, px = per_image(c, "enc_s"), per_image(c, "dec_s"), pixels(c)
        if enc is None or dec is None:
            continue
        rel = [f"{v / ref[k]:.1f}×" if ref[k] else "—" for k, v in (("enc_s", enc), ("dec_s", dec))]
        mps = [f"{px / v / 1e6:.2f}" if px and v else "—" for v in (enc, dec)]
        rows.append([c.label, f"{enc:.3f}", f"{dec:.3f}", *mps, *rel])
    headers = ["curve", "enc s/image", "dec s/image", "enc MP/s", "dec MP/s", f"enc vs {anchor.key}",
               f"dec vs {anchor.key}"]  # fmt: skip
    return Block("table", headers=headers, rows=rows)


def report_blocks(
    curves: Sequence[Curve],
    anchor: str,
    method: Method = "pchip",
    *,
    title: str = "Comparison",
    command: str = "",
    facts: Sequence[str] = (),
    level: float = 0.95,
) -> list[Block]:
    """The report as blocks (see :func:`write_report` for the files).

    Args:
        curves: every curve, in legend order.
        anchor: key of the curve BD numbers are measured against.
        method: BD interpolation, ``pchip`` or ``akima``.
        title: the report's title.
        command: the command that made it (shown verbatim).
        facts: lines about the setup (images, machine, threads, versions).
        level: confidence level of the per-image statistics.
    """
    by_key = {c.key: c for c in curves}
    if anchor not in by_key:
        raise KeyError(f"anchor {anchor!r} is not one of the curves: {', '.join(by_key)}")
    a = by_key[anchor]
    measured = [c for c in curves if c.kind != "published"]
    published = [c for c in curves if c.kind == "published"]
    blocks = [Block("h1", title)]
    if command:
        blocks.append(Block("code", command))
    if facts:
        blocks.append(Block("p", " · ".join(facts)))
    blocks.append(Block("p", "Every bpp of a measured point is the size of a real file × 8 / pixels, "
                        "decoded from that file; PSNR and MS-SSIM are measured on the 8-bit "
                        "decoded image (RGB). MS-SSIM in dB is −10·log10(1 − mean MS-SSIM). "
                        "Dashed lines are published numbers, not measured here."))  # fmt: skip
    blocks += [Block("h2", "Rate-distortion")]
    blocks += [Block("image", f"bpp vs {_METRIC_UNITS[m][0]}", path=f) for m, f in PLOTS.items()]
    blocks += [
        Block("h2", f"BD-rate and BD-quality against {a.label}"),
        Block("p", f"Bjøntegaard deltas ({method.upper()} interpolation of log10(bpp) against quality, "
              "and of quality against log10(bpp)), integrated over the interval where both curves "
              "have points: that interval is stated beside every number, and nothing is "
              "extrapolated (\"no overlap\" where the curves share no interval). A negative "
              "BD-rate means fewer bits than the anchor for the same quality; a positive "
              "BD-PSNR means higher quality at the same rate. A curve needs at least 4 points "
              "for a number."),  # fmt: skip
        _bd_table(curves, a, method),
    ]
    if any(c.kind == "published" for c in curves) and any("estimate" in c.note for c in published):
        blocks.append(Block("p", "Published curves whose bpp is an entropy estimate rather than a "
                            "file size flatter themselves by the container and coding overhead; "
                            "read their BD numbers as indicative."))  # fmt: skip
    learned = [c for c in measured if c.kind == "learned"]
    classical = [c for c in measured if c.kind == "baseline"]
    if learned:
        blocks += [Block("h2", "Every learned point"),
                   Block("p", "bpp (file): real files; est. bpp: the model's likelihood estimate (no "
                         "file), with its gap to the real bits; times are per image on this machine's "
                         "CPU; train s: training and coder fitting of that point."),  # fmt: skip
                   _points_table(learned)]
    if classical:
        blocks += [Block("h2", "Every classical point"),
                   Block("p", "Each codec at each setting of its sweep (quality, or JPEG 2000's "
                         "compression ratio), real files."),  # fmt: skip
                   _points_table(classical, learned=False)]
    declared = _declared_table([c for c in measured if c.kind == "learned"], level)
    if declared is not None:
        blocks += [Block("h2", "Statistics the rate strategies declare"),
                   Block("p", f"Per point, the mean over the images and its {level:.0%} confidence "
                         "interval (Student t over the per-image values). For ADMM, the fraction "
                         "of zero code elements before and after pruning, as in the CAE-ADMM "
                         "paper's Table 1."),  # fmt: skip
                   declared]
    blocks += [Block("h2", "Speed"),
               Block("p", "Mean seconds per image over all points of a curve (encode: to a file; "
                     "decode: from the file), megapixels per second, and the ratio to the anchor "
                     "(as in the CAE-ADMM paper's Table 2). Learned codecs run on the CPU here."),
               _speed_table(measured, a)]  # fmt: skip
    if published:
        blocks += [Block("h2", "Published references")]
        blocks += [Block("p", f"{c.label}: {c.note}") for c in published]
        blocks.append(_published_table(published))
    notices = sorted({n for c in measured for p in c.points for n in p.results.notices})
    if notices:
        blocks += [Block("h2", "Notices"), *(Block("p", n) for n in notices)]
    return blocks


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|")


def to_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as Markdown."""
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}")
        elif b.kind == "h2":
            out.append(f"## {b.text}")
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "code":
            out.append(f"```\n{b.text}\n```")
        elif b.kind == "image":
            out.append(f"![{b.text}]({b.path})")
        elif b.kind == "table":
            lines = [f"| {' | '.join(map(_md_cell, b.headers))} |", "|" + "---|" * len(b.headers)]
            lines += [f"| {' | '.join(map(_md_cell, row))} |" for row in b.rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{padding:4px 8px;border-bottom:1px solid #ddd}
th{background:#f4f4f4;text-align:left}td{text-align:right}td:first-child{text-align:left}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto}img{max-width:100%}p{line-height:1.45}"""


def _inline(text: str) -> str:
    """Escape, then the one Markdown emphasis the blocks use (``*published*``)."""
    esc = html.escape(text)
    parts = esc.split("*")
    return "".join(f"<em>{p}</em>" if i % 2 else p for i, p in enumerate(parts)) if len(parts) % 2 else esc


def to_html(blocks: Sequence[Block], folder: Path) -> str:
    """The blocks as one self-contained HTML page (images read from ``folder`` and inlined)."""
    body: list[str] = []
    title = next((b.text for b in blocks if b.kind == "h1"), "report")
    for b in blocks:
        if b.kind in ("h1", "h2"):
            body.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "code":
            body.append(f"<pre>{html.escape(b.text)}</pre>")
        elif b.kind == "image":
            data = base64.b64encode((folder / b.path).read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(b.text)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(b.text)}</figcaption></figure>")  # fmt: skip
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.headers)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                           for row in b.rows)  # fmt: skip
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")  # fmt: skip


def _series(curves: Sequence[Curve]) -> list[Series]:
    return [Series(_label(c).replace("*", ""),
                   [p.results for p in c.sorted_points()], dashed=c.kind == "published",
                   marker="o" if c.kind == "learned" else ".")
            for c in curves]  # fmt: skip


def write_report(
    curves: Sequence[Curve],
    folder: Path,
    anchor: str,
    method: Method = "pchip",
    *,
    title: str = "Comparison",
    command: str = "",
    facts: Sequence[str] = (),
    max_bpp: float | None = None,
) -> Mapping[str, Path]:
    """Write the report folder: RD plots (PNG), ``report.md``, ``report.html`` and one
    CompressAI-schema JSON per curve under ``curves/``; files of an earlier report there are
    replaced. Returns name → path of what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if max_bpp is None:
        # Classical sweeps reach several bpp; the plot is about where the learned curves are.
        focus = [p.results.mean()["bpp"] for c in curves if c.kind != "baseline" for p in c.sorted_points()]
        max_bpp = max(focus) * 1.25 if focus else None
    for metric, name in PLOTS.items():
        label = _METRIC_UNITS[metric][0]
        written[name] = plot_rd(_series(curves), folder / name, title=f"{title}: bpp vs {label}",
                                metrics=(metric,), max_bpp=max_bpp, overwrite=True)  # fmt: skip
    (folder / "curves").mkdir(exist_ok=True)
    for c in curves:
        doc = curve_to_compressai([p.results for p in c.sorted_points()], c.label,
                                  c.note or f"{c.kind} curve of {title}")  # fmt: skip
        path = folder / "curves" / f"{c.key}.json"
        write_json(path, doc, overwrite=True)
        written[f"curves/{c.key}.json"] = path
    blocks = report_blocks(curves, anchor, method, title=title, command=command, facts=facts)
    write_text(folder / "report.md", to_markdown(blocks), overwrite=True)
    write_text(folder / "report.html", to_html(blocks, folder), overwrite=True)
    written["report.md"], written["report.html"] = folder / "report.md", folder / "report.html"
    return written
