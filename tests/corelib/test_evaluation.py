"""The evaluation engine: real files, honest bpp, CompressAI's results schema."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.evaluation import evaluate
from codec_lab.corelib.files import decode_bytes
from codec_lab.corelib.results import Results
from tests.helpers import write_image


def test_rows_measure_real_files(trained_codec: Codec, tmp_path: Path) -> None:
    images = [write_image(tmp_path / "in" / "a.png", 48, 40, 1),
              write_image(tmp_path / "in" / "b.png", 50, 37, 2)]
    keep = tmp_path / "keep"
    keep.mkdir()
    result = evaluate(trained_codec, images, keep_dir=keep)
    assert [r["image"] for r in result.rows] == ["a.png", "b.png"]
    for r, p in zip(result.rows, images, strict=True):
        file = keep / f"{p.name}.cdl"
        assert r["bytes"] == file.stat().st_size
        assert r["bpp"] == r["bytes"] * 8 / (r["height"] * r["width"])
        assert decode_bytes(trained_codec, file.read_bytes()).shape[-2:] == (r["height"], r["width"])
        assert r["psnr"] > 0 and 0 < r["ssim"] <= 1 and r["enc_s"] >= 0 and r["dec_s"] >= 0
        assert r["est_bpp"] > 0 and 0 < r["kept"] < 1
    assert result.notices == []


def test_converted_images_leave_a_notice(trained_codec: Codec, tmp_path: Path) -> None:
    result = evaluate(trained_codec, [write_image(tmp_path / "a.png", 40, 40, mode="RGBA")])
    assert len(result.notices) == 1 and "RGBA" in result.notices[0]


def test_mean_skips_nan_and_sizes() -> None:
    r = Results(rows=[
        {"image": "a", "height": 10, "width": 10, "bpp": 1.0, "ms-ssim": float("nan")},
        {"image": "b", "height": 20, "width": 20, "bpp": 2.0, "ms-ssim": 0.5},
    ])  # fmt: skip
    assert r.mean() == {"bpp": 1.5, "ms-ssim": 0.5}
    assert Results().mean() == {}


def test_compressai_schema(trained_codec: Codec, tmp_path: Path) -> None:
    result = evaluate(trained_codec, [write_image(tmp_path / "a.png", 48, 48)])
    doc = result.to_compressai("cae+admm", "tiny")
    assert doc["name"] == "cae+admm" and doc["description"] == "tiny"
    res = doc["results"]
    for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "ssim-rgb", "encoding_time", "decoding_time"):
        assert isinstance(res[key], list) and len(res[key]) == 1
    assert res["bpp"][0] == pytest.approx(result.rows[0]["bpp"])
    assert not math.isnan(res["ms-ssim-rgb"][0])
    assert doc["per_image"] == result.rows
