"""The comparison report: confidence intervals, BD cells, Markdown and self-contained HTML."""

from __future__ import annotations

from pathlib import Path

import pytest

from codec_lab.corelib.comparison import Curve, Point
from codec_lab.corelib.contracts.base import ReportColumn
from codec_lab.corelib.report import confidence_interval, report_blocks, to_markdown, write_report
from codec_lab.corelib.results import CodecDescription, Results


def _curve(key: str, kind: str, points: list[tuple[float, float, float]], shift: float = 0.0) -> Curve:
    col = ReportColumn("zeros", "zeros after", ".3f", "fraction of zero code elements after pruning")
    desc = CodecDescription(name=key, columns=(col,) if kind == "learned" else ())
    pts = []
    for i, (bpp, psnr, msssim) in enumerate(points):
        rows = [{"image": f"im{j}.png", "height": 8, "width": 8, "bytes": int(bpp * 8), "bpp": bpp,
                 "psnr": psnr + shift + 0.1 * j, "ms-ssim": msssim, "enc_s": 0.1 * (j + 1),
                 "dec_s": 0.05, "zeros": 0.5 + 0.1 * j} for j in range(3)]  # fmt: skip
        pts.append(Point(f"{key}-{i}", key, {"model.rate.keep": 0.1 * (i + 1)}, Results(rows, codec=desc)))
    return Curve(key, key.upper(), kind, pts)  # type: ignore[arg-type]


CURVE = [(0.1, 26.0, 0.90), (0.2, 28.0, 0.93), (0.4, 30.0, 0.96), (0.8, 32.0, 0.98)]


def test_confidence_interval_is_students_t() -> None:
    mean, lo, hi = confidence_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert hi - mean == pytest.approx(4.302652729911275 * 1.0 / 3**0.5)  # t(0.975, 2) · s / √n
    assert confidence_interval([1.0]) is None


def test_confidence_interval_of_a_fraction_stays_within_its_bounds() -> None:
    """Two images of a fraction: the t interval alone would reach far past 0 and 1."""
    mean, lo, hi = confidence_interval([0.1, 0.5], bounds=(0.0, 1.0))
    assert mean == pytest.approx(0.3) and (lo, hi) == (0.0, 1.0)
    assert confidence_interval([0.1, 0.5])[1] < 0  # type: ignore[index]


def test_blocks_state_method_interval_and_reasons() -> None:
    anchor = _curve("jpeg", "baseline", CURVE)
    better = _curve("ours", "learned", CURVE, shift=1.0)
    short = _curve("short", "learned", CURVE[:3])
    far = _curve("far", "learned", [(b * 100, p + 30, m) for b, p, m in CURVE])
    blocks = report_blocks([anchor, better, short, far], "jpeg", title="T", command="codec compare x")
    md = to_markdown(blocks)
    assert "# T" in md and "codec compare x" in md
    ours = next(line for line in md.splitlines() if line.startswith("| OURS |"))
    assert "−" in ours and "pchip over" in ours and "+1.00 dB" in ours
    assert "test has 3 distinct points (at least 4 needed)" in md
    assert "no overlap" in next(line for line in md.splitlines() if line.startswith("| FAR |"))
    assert "95% CI" in md and "zeros after" in md
    with pytest.raises(KeyError, match="anchor"):
        report_blocks([anchor], "webp")


def test_html_is_self_contained(tmp_path: Path) -> None:
    curves = [_curve("jpeg", "baseline", CURVE), _curve("ours", "learned", CURVE, shift=0.5),
              Curve("pub", "Paper (published)", "published",
                    [Point(f"p{i}", "pub", {}, Results(means={"bpp": b, "psnr": p + 2, "ms-ssim": m}))
                     for i, (b, p, m) in enumerate(CURVE)], note="bpp: an estimate")]  # fmt: skip
    written = write_report(curves, tmp_path, "jpeg", "akima", title="T <&>")
    html = (tmp_path / "report.html").read_text()
    assert "<title>T &lt;&amp;&gt;</title>" in html
    assert html.count("data:image/png;base64,") == 2 and 'src="rd_' not in html
    assert "akima over" in (tmp_path / "report.md").read_text()
    assert set(written) >= {"rd_psnr.png", "rd_msssim.png", "report.md", "report.html", "curves/pub.json"}
