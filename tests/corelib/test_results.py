"""The results model: one codec's rows, means and description, through CompressAI's schema and back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.contracts import ReportColumn
from codec_lab.corelib.evaluation import evaluate
from codec_lab.corelib.results import (
    CodecDescription,
    Results,
    curve_from_compressai,
    curve_to_compressai,
    describe_codec,
)
from tests.helpers import write_image

COLUMN = ReportColumn("share", "sent share", ".2f", "what a test rate sends", (0.0, 1.0))


def _results(bpp: float = 0.5) -> Results:
    desc = CodecDescription("toy", "a toy", {"rate": "toy@1.0"}, {"rate": {"k": 2}}, ("map", "y"),
                            (COLUMN,), 42)  # fmt: skip
    rows = [{"image": f"{i}.png", "height": 8, "width": 8, "bytes": 4 + i, "bpp": bpp + i, "psnr": 30.0 + i,
             "ms-ssim": float("nan"), "ssim": 0.9, "enc_s": 0.1, "dec_s": 0.2, "share": 0.25 * i}
            for i in range(2)]  # fmt: skip
    return Results(rows=rows, codec=desc)


def test_describe_codec_names_components_streams_and_the_rate_columns(tiny_codec: Codec) -> None:
    d = describe_codec(tiny_codec)
    assert d.name == "cae+admm+histogram"
    assert d.components["rate"] == "admm@" + type(tiny_codec.rate).version and d.component("rate") == "admm"
    assert d.parameters["rate"]["cell"] == 32 and "name" not in d.parameters["rate"]
    assert d.streams == tuple(s.name for s in tiny_codec.specs)
    assert d.columns == type(tiny_codec.rate).report_columns
    assert d.num_parameters == sum(p.numel() for p in tiny_codec.parameters())


def test_round_trip_through_compressai_json() -> None:
    res = _results()
    doc = json.loads(json.dumps(res.to_compressai()))
    assert doc["name"] == "toy" and doc["description"] == "a toy"
    assert doc["results"]["bpp"] == [1.0] and doc["results"]["psnr-rgb"] == [30.5]
    assert doc["results"]["ms-ssim-rgb"] == [None]  # every image NaN: unknown, still written
    back = Results.from_compressai(doc)
    assert back.codec == res.codec
    assert json.dumps(back.rows) == json.dumps(res.rows)  # NaN ≠ NaN: compare as text
    assert math.isnan(back.rows[0]["ms-ssim"])
    assert back.mean() == res.mean() == pytest.approx(
        {"bytes": 4.5, "bpp": 1.0, "psnr": 30.5, "ssim": 0.9, "enc_s": 0.1, "dec_s": 0.2, "share": 0.125})


def test_name_and_description_may_be_overridden() -> None:
    doc = _results().to_compressai("other", "another")
    back = Results.from_compressai(doc)
    assert (back.codec.name, back.codec.summary) == ("other", "another")
    assert back.codec.columns == (COLUMN,)


def test_a_file_of_compressai_itself_gives_means() -> None:
    doc = {"name": "bmshj2018-factorized", "description": "Inference (ans)",
           "results": {"psnr-rgb": [27.1, 29.2], "ms-ssim-rgb": [0.92, 0.94], "bpp": [0.12, 0.2],
                       "encoding_time": [0.01, 0.02], "decoding_time": [0.02, 0.03]}}  # fmt: skip
    one = Results.from_compressai(doc, point=1)
    assert one.rows == [] and one.codec.name == "bmshj2018-factorized"
    assert one.mean() == {"bpp": 0.2, "psnr": 29.2, "ms-ssim": 0.94, "enc_s": 0.02, "dec_s": 0.03}
    curve = curve_from_compressai(doc)
    assert [r.mean()["bpp"] for r in curve] == [0.12, 0.2]


def test_curve_round_trip_sorted_by_bpp() -> None:
    pts = [_results(0.9), _results(0.1)]
    doc = json.loads(json.dumps(curve_to_compressai(pts, "toy", "a sweep")))
    assert doc["results"]["bpp"] == pytest.approx([0.6, 1.4])
    back = curve_from_compressai(doc)
    assert [r.mean() for r in back] == [pts[1].mean(), pts[0].mean()]
    assert back[0].codec == pts[1].codec  # settings and declared columns survive


def test_evaluate_fills_the_model(tiny_codec: Codec, tmp_path: Path) -> None:
    res = evaluate(tiny_codec, [write_image(tmp_path / "a.png", 48, 48)])
    assert res.codec == describe_codec(tiny_codec)
    back = Results.from_compressai(json.loads(json.dumps(res.to_compressai())))
    assert back.rows == res.rows and back.codec == res.codec
