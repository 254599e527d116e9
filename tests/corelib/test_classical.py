"""The generic baseline runner: real files, bpp from their bytes, settings within a budget.

It is run here with the built-in Pillow baselines obtained through the registry, and with a
tiny baseline of the test's own (the runner names no codec).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec_lab.contracts import Baseline, ReportColumn
from codec_lab.corelib.classical import evaluate_classical, sweep
from codec_lab.corelib.errors import CodecError, ConfigError
from codec_lab.corelib.images import sample_images
from codec_lab.corelib.render import grid
from codec_lab.registry.components import Registry

REGISTRY = Registry()
AVAILABLE = [n for n in REGISTRY.baseline_names() if REGISTRY.baseline_unavailable(n) is None]
IMAGES = sample_images("held-out")  # real photos (Kodak crops)


def test_the_builtin_baselines_are_registered() -> None:
    assert {"jpeg", "webp", "jpeg2000", "avif"} <= set(REGISTRY.baseline_names())
    assert {"jpeg", "webp", "jpeg2000"} <= set(AVAILABLE)


@pytest.mark.parametrize("name", AVAILABLE)
def test_real_files_and_their_bpp(name: str, tmp_path: Path) -> None:
    baseline = REGISTRY.baseline(name)
    setting = baseline.sweep[len(baseline.sweep) // 2]
    res = evaluate_classical(baseline, IMAGES, setting=setting, keep_dir=tmp_path)
    assert [r["image"] for r in res.rows] == [p.name for p in IMAGES]
    for r, p in zip(res.rows, IMAGES, strict=True):
        file = tmp_path / f"{p.name}{baseline.suffix}"
        with Image.open(file) as im:  # a real file, which a standalone decoder reads
            assert im.format == baseline.pillow_format and im.size == (r["width"], r["height"])
            assert np.array_equal(baseline.decode(file.read_bytes()), np.asarray(im.convert("RGB")))
        assert r["bytes"] == file.stat().st_size
        assert r["bpp"] == r["bytes"] * 8 / (r["height"] * r["width"])
        assert r["psnr"] > 20 and 0 < r["ms-ssim"] <= 1 and r[baseline.setting.key] == setting
    assert res.codec.name == name and res.codec.columns == (baseline.setting,)
    assert res.codec.components == {"baseline": f"{name}@{baseline.version}"}
    assert baseline.library() in res.codec.summary and res.codec.parameters["library"] == baseline.library()
    assert res.codec.parameters[baseline.setting.key] == setting
    assert baseline.setting.label in grid(res).headers and "est. bpp" not in grid(res).headers


def test_options_are_recorded() -> None:
    res = evaluate_classical(REGISTRY.baseline("jpeg"), IMAGES[:1], setting=50)
    assert res.codec.parameters["subsampling"] == "4:2:0" and res.codec.parameters["optimize"] is True


@pytest.mark.parametrize("name", ["jpeg", "jpeg2000"])
def test_highest_quality_within_a_byte_budget(name: str) -> None:
    baseline = REGISTRY.baseline(name)
    mid = evaluate_classical(baseline, IMAGES, setting=baseline.sweep[len(baseline.sweep) // 2])
    budgets = [r["bytes"] for r in mid.rows]
    res = evaluate_classical(baseline, IMAGES, max_bytes=budgets)
    for path, r, budget in zip(IMAGES, res.rows, budgets, strict=True):
        assert r["bytes"] <= budget
        if name == "jpeg" and r["quality"] < baseline.high:  # one step better would not fit
            with Image.open(path) as im:
                image = np.asarray(im.convert("RGB"))
            assert len(baseline.encode(image, r["quality"] + 1)) > budget


def test_the_smallest_file_when_nothing_fits() -> None:
    jpeg = REGISTRY.baseline("jpeg")
    res = evaluate_classical(jpeg, IMAGES[:1], max_bytes=[10])
    assert res.rows[0]["quality"] == jpeg.low and res.rows[0]["bytes"] > 10


def test_sweep_is_a_curve() -> None:
    pts = sweep(REGISTRY.baseline("jpeg"), IMAGES[:1], settings=[10, 50, 90])
    bpps = [p.mean()["bpp"] for p in pts]
    assert bpps == sorted(bpps) and [p.codec.parameters["quality"] for p in pts] == [10, 50, 90]


def test_refusals() -> None:
    with pytest.raises(ValueError, match="either"):
        evaluate_classical(REGISTRY.baseline("jpeg"), IMAGES, setting=50, max_bytes=[1, 2])
    with pytest.raises(ValueError, match="1 byte budgets for 2 images"):
        evaluate_classical(REGISTRY.baseline("jpeg"), IMAGES, max_bytes=[1])


# ---------------------------------------------------------------- a baseline of our own


class PNGQuantized(Baseline):
    """Lossy by quantizing to ``setting`` levels per channel, stored as PNG (a test codec)."""

    name = "png-levels"
    summary = "PNG of a quantized image (test)"
    setting = ReportColumn("levels", "levels", ".0f", "levels per channel")
    sweep = (2, 4, 16, 64)
    low, high = 2, 256
    suffix = ".png"

    def encode(self, image: np.ndarray, setting: float) -> bytes:
        step = 256 / int(setting)
        q = (np.floor(image / step) * step + step / 2).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(q).save(buf, "PNG")
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB")).copy()

    def library(self) -> str:
        return "numpy + Pillow PNG"


def test_a_baseline_of_our_own(tmp_path: Path) -> None:
    pts = sweep(PNGQuantized(), IMAGES[:1])
    bpps, psnrs = [p.mean()["bpp"] for p in pts], [p.mean()["psnr"] for p in pts]
    assert bpps == sorted(bpps) and psnrs == sorted(psnrs)
    res = evaluate_classical(PNGQuantized(), IMAGES[:1], setting=16, keep_dir=tmp_path)
    assert res.rows[0]["levels"] == 16 and res.codec.summary == "numpy + Pillow PNG, real files"
    assert (tmp_path / f"{IMAGES[0].name}.png").stat().st_size == res.rows[0]["bytes"]


def test_a_byte_budget_for_a_baseline_of_our_own() -> None:
    size = evaluate_classical(PNGQuantized(), IMAGES[:1], setting=16).rows[0]["bytes"]
    res = evaluate_classical(PNGQuantized(), IMAGES[:1], max_bytes=[size])
    assert res.rows[0]["bytes"] <= size and 2 <= res.rows[0]["levels"] <= 256  # sizes are not monotonic


def test_an_unavailable_baseline_is_refused() -> None:
    class Missing(PNGQuantized):
        def unavailable(self) -> str | None:
            return "needs libfoo: pip install foo"

    with pytest.raises(ConfigError, match="'png-levels' is not available: needs libfoo"):
        evaluate_classical(Missing(), IMAGES[:1], setting=16)


def test_a_decode_of_the_wrong_shape_is_refused() -> None:
    class Cropping(PNGQuantized):
        def decode(self, data: bytes) -> np.ndarray:
            return super().decode(data)[1:]

    with pytest.raises(CodecError, match="decode returned uint8"):
        evaluate_classical(Cropping(), IMAGES[:1], setting=16)


def test_encode_must_return_bytes() -> None:
    class Stringy(PNGQuantized):
        def encode(self, image: np.ndarray, setting: float) -> bytes:
            return "not bytes"  # type: ignore[return-value]

    with pytest.raises(CodecError, match="encode returned str"):
        evaluate_classical(Stringy(), IMAGES[:1], setting=16)
