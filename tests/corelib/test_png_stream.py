"""The streaming PNG writer: any band sizes give the PNG Pillow reads back exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from codec_lab.corelib.png_stream import PngRowWriter


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
