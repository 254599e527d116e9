"""Reading and writing images: conversions with notices, clear errors, atomic writes."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec_lab.corelib.errors import DataError, ImageError, OutputError
from codec_lab.corelib.images import (
    list_images,
    load_array,
    load_image,
    sample_images,
    save_image,
    to_uint8,
)
from codec_lab.corelib.outputs import atomic_output
from tests.helpers import image_array, write_image


def test_rgb_png_loads_exactly(tmp_path: Path) -> None:
    arr = image_array(30, 20, seed=1)
    Image.fromarray(arr).save(tmp_path / "a.png")
    x, notice = load_image(tmp_path / "a.png")
    assert notice is None
    assert x.shape == (1, 3, 30, 20) and x.dtype == torch.float32
    assert np.array_equal(to_uint8(x), arr)


@pytest.mark.parametrize(("mode", "words"), [("RGBA", ["RGBA", "transparency"]), ("L", ["L to RGB"]),
                                             ("P", ["P to RGB"])])  # fmt: skip
def test_other_modes_convert_with_a_notice(tmp_path: Path, mode: str, words: list[str]) -> None:
    p = write_image(tmp_path / f"a-{mode}.png", 24, 16, mode=mode)
    x, notice = load_image(p)
    assert x.shape == (1, 3, 24, 16)
    assert notice is not None and p.name in notice
    for w in words:
        assert w in notice


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 200
    arr[:2, :, 3] = 255
    Image.fromarray(arr, "RGBA").save(tmp_path / "t.png")
    x, _ = load_image(tmp_path / "t.png")
    rgb = to_uint8(x)
    assert (rgb[:2] == [200, 0, 0]).all()
    assert (rgb[2:] == 255).all()


def test_grayscale_is_replicated_to_three_channels(tmp_path: Path) -> None:
    p = write_image(tmp_path / "g.png", 10, 12, mode="L")
    x, _ = load_image(p)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    assert np.array_equal(to_uint8(x)[..., 0], np.asarray(Image.open(p)))


def test_16_bit_grayscale_keeps_its_brightness(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    x, notice = load_image(tmp_path / "g16.png")
    assert notice is not None
    assert abs(float(x.mean()) - 0.5) < 0.05


def test_jpeg_loads(tmp_path: Path) -> None:
    Image.fromarray(image_array(16, 24)).save(tmp_path / "a.jpg", quality=90)
    x, notice = load_image(tmp_path / "a.jpg")
    assert x.shape == (1, 3, 16, 24) and notice is None


def test_missing_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_garbage_is_an_image_error(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(ImageError, match="cannot read image"):
        load_image(p)


def test_truncated_png_is_an_image_error(tmp_path: Path) -> None:
    p = write_image(tmp_path / "t.png", 64, 64)
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ImageError):
        load_image(p)


def test_to_uint8_rounds_and_clamps() -> None:
    x = torch.tensor([[[[-0.5, 0.0, 0.5 / 255, 1.49 / 255, 1.0, 2.0]]]]).expand(1, 3, 1, 6)
    assert to_uint8(x)[0, :, 0].tolist() == [0, 0, 0, 1, 255, 255]
    assert to_uint8(x[0]).shape == (1, 6, 3)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ""])
def test_save_image_lossless_round_trip(tmp_path: Path, suffix: str) -> None:
    arr = image_array(12, 9, seed=2)
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255
    target = tmp_path / f"out{suffix}"
    save_image(x, target)
    assert np.array_equal(np.asarray(Image.open(target).convert("RGB")), arr)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_save_image_into_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        save_image(torch.zeros(1, 3, 4, 4), tmp_path / "no" / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_save_image_onto_a_folder(tmp_path: Path) -> None:
    (tmp_path / "d.png").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        save_image(torch.zeros(1, 3, 4, 4), tmp_path / "d.png")


def test_save_image_inside_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError):
        save_image(torch.zeros(1, 3, 4, 4), tmp_path / "f" / "x.png")


def test_atomic_output_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_output(target, overwrite=True) as tmp:
        assert tmp != target and tmp.parent == tmp_path
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"
    assert list(tmp_path.iterdir()) == [target]


def test_list_images(tmp_path: Path) -> None:
    write_image(tmp_path / "b.png")
    write_image(tmp_path / "a.PNG")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.PNG", "b.png"]


def test_list_images_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images"):
        list_images(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        list_images(tmp_path / "f.txt")


def test_sample_images_ship_with_the_package() -> None:
    samples = sample_images()
    assert len(samples) == 8
    x, notice = load_image(samples[0])
    assert notice is None and x.shape == (1, 3, 256, 256)


def _png16(path: Path, arr: np.ndarray, color_type: int) -> Path:
    """A 16-bit-per-channel PNG written byte by byte (Pillow cannot write 48-bit RGB)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def test_16_bit_rgb_gets_the_notice_16_bit_gray_gets(tmp_path: Path) -> None:
    """Pillow opens a 48-bit PNG as plain "RGB" (high bytes only): it is said, as for gray."""
    rgb = (np.arange(6 * 5 * 3).reshape(6, 5, 3) * 1000).astype(np.uint16)
    _, rgb_notice = load_array(_png16(tmp_path / "rgb16.png", rgb, 2))
    gray = np.linspace(0, 65535, 30).reshape(6, 5).astype(np.uint16)
    _, gray_notice = load_array(_png16(tmp_path / "g16.png", gray, 0))
    assert rgb_notice == "rgb16.png: converted 16-bit RGB to RGB (16 bits per channel reduced to 8)"
    assert gray_notice == "g16.png: converted I;16 to RGB (16 bits per channel reduced to 8)"
    arr, _ = load_array(tmp_path / "rgb16.png")
    assert np.array_equal(arr, (rgb >> 8).astype(np.uint8))
    rgba = np.concatenate([rgb, np.full((6, 5, 1), 65535, np.uint16)], -1)
    _, notice = load_array(_png16(tmp_path / "rgba16.png", rgba, 6))
    assert notice is not None and "16-bit RGBA" in notice and "16 bits per channel" in notice
    Image.fromarray(image_array(6, 5)).save(tmp_path / "rgb8.png")
    assert load_array(tmp_path / "rgb8.png")[1] is None


def test_load_array_is_8_bit_and_load_image_its_float(tmp_path: Path) -> None:
    arr = image_array(30, 20, seed=1)
    Image.fromarray(arr).save(tmp_path / "a.png")
    got, notice = load_array(tmp_path / "a.png")
    assert got.dtype == np.uint8 and got.shape == (30, 20, 3) and notice is None
    assert np.array_equal(got, arr)
    x, _ = load_image(tmp_path / "a.png")
    assert torch.equal(x, torch.from_numpy(arr).permute(2, 0, 1)[None].float().div(255.0))


def test_pixel_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the limit: refused by us (up to twice it) or by Pillow's bomb guard (set to our
    limit), with the same one-line error naming the limit and how to raise it."""
    p = write_image(tmp_path / "a.png", 40, 50)  # 2,000 pixels
    with pytest.raises(ImageError, match=r"is 50x40 \(2,000 pixels\), over the limit of 1,999") as info:
        load_array(p, max_pixels=1999)
    assert "--max-pixels" in info.value.hint and "CODEC_MAX_PIXELS" in info.value.hint
    with pytest.raises(ImageError, match=r"has 2,000 pixels, over the limit of 500 pixels"):
        load_array(p, max_pixels=500)  # over twice the limit: Pillow's DecompressionBombError
    monkeypatch.setenv("CODEC_MAX_PIXELS", "1000")
    with pytest.raises(ImageError, match="over the limit of 1,000 pixels") as info:
        load_image(p)
    assert "\n" not in str(info.value)
    assert load_array(p, max_pixels=2000)[0].shape == (40, 50, 3)


def test_our_limit_governs_pillow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image over Pillow's default guard (89 MP) but under ours loads: the guard follows ours
    while we read, and Pillow's own setting is left as it was for everyone else."""
    p = write_image(tmp_path / "a.png", 40, 50)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # as if Pillow's own default were tiny
    assert load_array(p)[0].shape == (40, 50, 3)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_save_image_takes_8_bit_arrays(tmp_path: Path) -> None:
    arr = image_array(12, 9, seed=2)
    save_image(arr, tmp_path / "a.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), arr)
