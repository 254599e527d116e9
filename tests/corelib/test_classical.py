"""Classical codecs through Pillow: real files, bpp from their bytes, settings within a budget."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from codec_lab.corelib.classical import CODECS, classical_codec, evaluate_classical, sweep
from codec_lab.corelib.errors import ConfigError
from codec_lab.corelib.images import sample_images
from codec_lab.corelib.render import grid

AVAILABLE = [name for name, c in CODECS.items() if c.available()]
IMAGES = sample_images("held-out")  # real photos (Kodak crops)


@pytest.mark.parametrize("name", AVAILABLE)
def test_real_files_and_their_bpp(name: str, tmp_path: Path) -> None:
    codec = CODECS[name]
    setting = codec.sweep[len(codec.sweep) // 2]
    res = evaluate_classical(name, IMAGES, setting=setting, keep_dir=tmp_path)
    assert [r["image"] for r in res.rows] == [p.name for p in IMAGES]
    for r, p in zip(res.rows, IMAGES, strict=True):
        file = tmp_path / f"{p.name}{codec.suffix}"
        with Image.open(file) as im:
            assert im.format == codec.pillow_format and im.size == (r["width"], r["height"])
        assert r["bytes"] == file.stat().st_size
        assert r["bpp"] == r["bytes"] * 8 / (r["height"] * r["width"])
        assert r["psnr"] > 20 and 0 < r["ms-ssim"] <= 1 and r[codec.setting.key] == setting
    assert res.codec.name == name and res.codec.columns == (codec.setting,)
    assert codec.setting.label in grid(res).headers and "est. bpp" not in grid(res).headers


@pytest.mark.parametrize("name", ["jpeg", "jpeg2000"])
def test_highest_quality_within_a_byte_budget(name: str) -> None:
    codec = CODECS[name]
    mid = evaluate_classical(name, IMAGES, setting=codec.sweep[len(codec.sweep) // 2])
    budgets = [r["bytes"] for r in mid.rows]
    res = evaluate_classical(name, IMAGES, max_bytes=budgets)
    for path, r, budget in zip(IMAGES, res.rows, budgets, strict=True):
        assert r["bytes"] <= budget
        if name == "jpeg" and r["quality"] < codec.high:  # one step better would not fit
            with Image.open(path) as im:
                assert len(codec.encode(im.convert("RGB"), r["quality"] + 1)) > budget


def test_the_smallest_file_when_nothing_fits() -> None:
    res = evaluate_classical("jpeg", IMAGES[:1], max_bytes=[10])
    assert res.rows[0]["quality"] == CODECS["jpeg"].low and res.rows[0]["bytes"] > 10


def test_sweep_is_a_curve() -> None:
    pts = sweep("jpeg", IMAGES[:1], settings=[10, 50, 90])
    bpps = [p.mean()["bpp"] for p in pts]
    assert bpps == sorted(bpps) and [p.codec.parameters["quality"] for p in pts] == [10, 50, 90]


def test_refusals() -> None:
    with pytest.raises(ConfigError, match="valid: jpeg, webp"):
        classical_codec("png")
    with pytest.raises(ValueError, match="either"):
        evaluate_classical("jpeg", IMAGES, setting=50, max_bytes=[1, 2])
