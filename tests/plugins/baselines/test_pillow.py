"""The built-in Pillow baselines: jpeg, webp, jpeg2000, avif."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin, features

from codec_lab.corelib.errors import ConfigError
from codec_lab.corelib.images import sample_images
from codec_lab.plugins.baselines import pillow
from codec_lab.plugins.baselines.pillow import AVIF, JPEG, JPEG2000, PillowBaseline, WebP
from codec_lab.registry.components import Registry

ALL = [JPEG, WebP, JPEG2000, AVIF]
AVAILABLE = [cls for cls in ALL if cls().unavailable() is None]


def _photo() -> np.ndarray:
    with Image.open(sample_images("held-out")[0]) as im:  # a 256 × 256 Kodak crop
        return np.asarray(im.convert("RGB")).copy()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / mse) if mse else float("inf")


def _small(h: int = 24, w: int = 40) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], axis=-1).astype(np.uint8)


def test_registered_through_the_hook() -> None:
    assert pillow.codec_register_baselines() == ALL
    r = Registry()
    for cls in ALL:
        info = r.baseline_info(cls.name)
        assert info.cls is cls and info.kind == "baseline" and info.source == "built-in"


def test_declarations() -> None:
    assert [c.name for c in ALL] == ["jpeg", "webp", "jpeg2000", "avif"]
    assert [c.setting.key for c in ALL] == ["quality", "quality", "ratio", "quality"]
    assert [c.larger_is_smaller for c in ALL] == [False, False, True, False]
    assert [c.suffix for c in ALL] == [".jpg", ".webp", ".jp2", ".avif"]
    assert [(c.low, c.high) for c in ALL] == [(1, 95), (0, 100), (1, 2000), (0, 100)]
    assert JPEG.sweep == (5, 10, 15, 20, 30, 40, 50, 60, 75, 85, 95)
    assert WebP.sweep == (0, 5, 10, 20, 30, 40, 50, 60, 75, 90)
    assert JPEG2000.sweep == (400, 200, 120, 80, 60, 48, 32, 24, 16, 12)
    assert AVIF.sweep == (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)
    assert JPEG().options() == {"subsampling": "4:2:0", "optimize": True}
    assert JPEG2000().options() == {"irreversible": True}


@pytest.mark.parametrize("cls", AVAILABLE, ids=lambda c: c.name)
def test_round_trip(cls: type[PillowBaseline]) -> None:
    b = cls()
    image = np.ascontiguousarray(_photo()[:64, :48])  # 64 × 48
    before = image.copy()
    data = b.encode(image, b.sweep[-1])
    assert isinstance(data, bytes) and data
    assert np.array_equal(image, before), "encode modified its input"
    rec = b.decode(data)
    assert rec.shape == image.shape and rec.dtype == np.uint8
    with Image.open(io.BytesIO(data)) as im:  # what a decoder of the real file shows
        assert im.format == b.pillow_format
        assert np.array_equal(rec, np.asarray(im.convert("RGB")))
    assert _psnr(image, rec) > 25
    assert b.library().startswith(f"Pillow {Image.__version__} {b.pillow_format}")


@pytest.mark.parametrize("cls", AVAILABLE, ids=lambda c: c.name)
def test_sweep_goes_from_small_files_to_large(cls: type[PillowBaseline]) -> None:
    """Along the sweep, bpp and quality grow (read backwards: both decrease), spanning roughly
    0.1–2 bpp on a Kodak photo."""
    b, image = cls(), _photo()
    bpps, quality = [], []
    for s in b.sweep:
        assert b.low <= s <= b.high
        data = b.encode(image, s)
        bpps.append(len(data) * 8 / (image.shape[0] * image.shape[1]))
        quality.append(_psnr(image, b.decode(data)))
    assert bpps == sorted(bpps) and len(set(bpps)) == len(bpps)
    assert quality == sorted(quality)
    assert bpps[0] < 0.2 and bpps[-1] > 1.5


def test_jpeg_is_420() -> None:
    with Image.open(io.BytesIO(JPEG().encode(_small(), 75))) as im:
        assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0


def _jp2_transform(data: bytes) -> int:
    """The COD marker's wavelet transformation: 0 = 9/7 irreversible, 1 = 5/3 reversible."""
    cod = data.index(b"\xff\x52")  # marker, Lcod, Scod, SGcod (4), levels, cb w, cb h, style, transform
    return data[cod + 13]


@pytest.mark.skipif(not features.check("jpg_2000"), reason="Pillow without OpenJPEG")
def test_jpeg2000_uses_the_irreversible_wavelet() -> None:
    data = JPEG2000().encode(_small(64, 64), 20)
    assert _jp2_transform(data) == 0
    buf = io.BytesIO()  # the check itself tells the two apart
    Image.fromarray(_small(64, 64)).save(buf, "JPEG2000", irreversible=False)
    assert _jp2_transform(buf.getvalue()) == 1


@pytest.mark.skipif(not features.check("jpg_2000"), reason="Pillow without OpenJPEG")
def test_jpeg2000_setting_is_a_compression_ratio() -> None:
    image = _photo()
    raw = image.size
    for ratio in (100, 20):
        assert len(JPEG2000().encode(image, ratio)) == pytest.approx(raw / ratio, rel=0.1)


def test_a_missing_format_is_unavailable_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pillow.features, "check", lambda feature: feature != "avif")
    assert AVIF().unavailable() is not None and ">= 11.3" in AVIF().unavailable()
    assert JPEG().unavailable() is None
    r = Registry()
    assert "avif" in r.baseline_names() and "11.3" in r.baseline_unavailable("avif")
    with pytest.raises(ConfigError, match=r"baseline 'avif' is not available: this Pillow .* AVIF"):
        r.baseline("avif")


def test_avif_availability_follows_pillow() -> None:
    assert (AVIF().unavailable() is None) == bool(features.check("avif"))
