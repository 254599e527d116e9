"""The streaming PNG writer and reader: any band sizes give the PNG Pillow reads back exactly,
and the reader gives Pillow's pixels for the PNGs it accepts."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec_lab.corelib.errors import ImageError
from codec_lab.corelib.png_stream import PngRowReader, PngRowWriter


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[: h // 2] = (np.arange(w)[None, :, None] * 7 % 256).astype(np.uint8)  # smooth rows too
    return img


@pytest.mark.parametrize(("h", "w", "bands"), [(1, 1, [1]), (5, 7, [2, 0, 3]), (37, 129, [1, 30, 6]),
                                               (300, 200, [300])])  # fmt: skip
def test_written_in_bands_reads_back_exactly(h: int, w: int, bands: list[int]) -> None:
    img = _image(h, w, seed=h)
    buf = io.BytesIO()
    writer = PngRowWriter(buf, w, h)
    start = 0
    for n in bands:
        writer.write(img[start : start + n])
        start += n
    writer.close()
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (w, h)
        assert np.array_equal(np.asarray(im), img)


def test_wrong_rows_are_refused() -> None:
    writer = PngRowWriter(io.BytesIO(), 4, 3)
    with pytest.raises(ValueError, match=r"\(n, 4, 3\) uint8"):
        writer.write(np.zeros((1, 5, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(n, 4, 3\) uint8"):
        writer.write(np.zeros((1, 4, 3), np.float32))
    writer.write(np.zeros((2, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="more than the 3 rows"):
        writer.write(np.zeros((2, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="declares 3 rows, 2 were written"):
        writer.close()
    with pytest.raises(ValueError, match="1 to 2\\*\\*31 - 1 pixels"):
        PngRowWriter(io.BytesIO(), 0, 3)


# ---------------------------------------------------------------------------- reading
@pytest.mark.parametrize("level", [0, 1, 6, 9])  # Pillow's levels choose different filters
def test_reader_gives_pillows_pixels_in_tile_order(tmp_path: Path, level: int) -> None:
    img = _image(90, 70, seed=level)
    path = tmp_path / "a.png"
    Image.fromarray(img).save(path, compress_level=level)
    reader = PngRowReader.open(path)
    assert reader is not None and reader.size == (90, 70) and (reader.width, reader.height) == (70, 90)
    for y in range(0, 90, 32):  # tile rows with an 8-row halo above and below, as tiling asks
        y0, y1 = max(0, y - 8), min(90, y + 40)
        assert np.array_equal(reader.rows(y0, y1), img[y0:y1])
    assert np.array_equal(reader.rows(0, 90), img)  # rows already forgotten: decoded again
    reader.close()


def test_reader_reads_our_writers_png(tmp_path: Path) -> None:
    img = _image(33, 17, seed=3)
    path = tmp_path / "b.png"
    with path.open("wb") as fh:
        writer = PngRowWriter(fh, 17, 33)
        writer.write(img)
        writer.close()
    reader = PngRowReader.open(path)
    assert reader is not None and np.array_equal(reader.rows(5, 33), img[5:])


def test_reader_declines_what_pillow_must_convert(tmp_path: Path) -> None:
    """Transparency, gray, palette, 16 bits, interlacing, JPEG: Pillow reads those whole (and
    open_rgb converts them with a notice)."""
    rgb = Image.fromarray(_image(20, 20))
    rgb.convert("RGBA").save(tmp_path / "rgba.png")
    rgb.convert("L").save(tmp_path / "gray.png")
    rgb.convert("P").save(tmp_path / "palette.png")
    rgb.save(tmp_path / "trns.png", transparency=(0, 0, 0))
    rgb.save(tmp_path / "photo.jpg")
    (tmp_path / "text.png").write_text("not a png")
    for name in ("rgba.png", "gray.png", "palette.png", "trns.png", "photo.jpg", "text.png", "missing.png"):
        assert PngRowReader.open(tmp_path / name) is None, name


def test_reader_damaged_png_is_an_image_error(tmp_path: Path) -> None:
    path = tmp_path / "c.png"
    Image.fromarray(_image(64, 64, seed=4)).save(path, compress_level=1)
    data = path.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    reader = PngRowReader.open(tmp_path / "cut.png")
    assert reader is not None
    with pytest.raises(ImageError, match="cannot read image .*cut.png"):
        reader.rows(0, 64)
    body = bytearray(data)
    body[len(body) // 2] ^= 0xFF  # inside the compressed rows
    (tmp_path / "flip.png").write_bytes(bytes(body))
    reader = PngRowReader.open(tmp_path / "flip.png")
    assert reader is not None
    with pytest.raises(ImageError, match="cannot read image .*flip.png"):
        reader.rows(0, 64)
