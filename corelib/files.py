"""Image ⇄ compressed file through a codec, tile by tile, with every check the container allows.

Files are coded in square tiles (``corelib.tiling``): memory is bounded by the tile, not by
the image. The tile size is recorded in the file, so decoding needs no option.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.container import Header, pack, unpack
from codec_lab.corelib.errors import BitstreamError
from codec_lab.corelib.png_stream import PngRowReader, PngRowWriter
from codec_lab.corelib.tiling import (
    MAX_TILE,
    Pixels,
    TileLayout,
    decode_tiles,
    encode_tiles,
    resolve_tile,
    tile_unit,
)

__all__ = ["decode_array", "decode_bytes", "decode_image", "decode_to_png", "encode_image", "read_compressed"]


def encode_image(codec: Codec, x: torch.Tensor | np.ndarray | Image.Image | PngRowReader,
                 digest: str | None = None, *,
                 tile: int | None = None) -> bytes:  # fmt: skip
    """Compress one image into a complete file's bytes.

    Args:
        x: a (1, 3, H, W) float tensor in [0, 1], an (H, W, 3) uint8 array (``load_array``),
            an RGB Pillow image (``open_rgb``) or a PNG read row by row (``open_for_coding``);
            8-bit pixels become floats one tile at a time.
        digest: the codec's ``weights_digest()``, when the caller has it already.
        tile: coding-tile side in pixels (see ``tiling.resolve_tile``); None: the default
            (1024 pixels, so a Kodak image is one tile; 512 for an image larger than that);
            0: the whole image as one tile.

    Raises:
        ConfigError: ``tile`` does not suit the codec.
    """
    pixels = Pixels(x)
    tile = resolve_tile(codec, tile, pixels.size)
    layout = TileLayout.of(codec, pixels.size, tile)
    payloads, crcs = encode_tiles(codec, pixels, layout)
    header = Header(digest=digest or codec.weights_digest(), image_size=pixels.size, symbol_crcs=crcs,
                    tile=tile)  # fmt: skip
    return pack(header, payloads)


def _open(codec: Codec, data: bytes, where: str, digest: str | None,
          max_pixels: int | None) -> tuple[TileLayout, list[bytes], list[int]]:  # fmt: skip
    """Validate a file against the codec: its layout, payloads and symbol CRCs."""
    header, streams = unpack(data, where, max_pixels)
    digest = digest or codec.weights_digest()
    if header.digest != digest:
        raise BitstreamError(
            f"{where} was made by another model (model digest {header.digest}, this model {digest})",
            "decompress it with the run that made it (--model RUN)",
        )
    layout = TileLayout.of(codec, header.image_size, header.tile)
    rows, cols = layout.grid
    n = len(streams) // (rows * cols)
    if n != len(codec.specs):
        raise BitstreamError(f"{where} has {n} streams per tile; this model codes {len(codec.specs)}",
                             "the file is damaged or was made by another model")  # fmt: skip
    unit = tile_unit(codec)
    if header.tile and (header.tile % unit or not codec.padded_size(1, 1)[0] <= header.tile <= MAX_TILE):
        # Never written so: a tile the model cannot code, or one larger than any writer makes.
        raise BitstreamError(f"{where} is coded in {header.tile}-pixel tiles, which this model cannot "
                             f"code (tiles must be multiples of {unit} pixels, at most {MAX_TILE})",
                             "the file is damaged or was made by another model")  # fmt: skip
    return layout, streams, header.symbol_crcs


def _decode(codec: Codec, data: bytes, where: str, digest: str | None, max_pixels: int | None,
            sink_for: Callable[[tuple[int, int]], _Sink]) -> _Sink:  # fmt: skip
    layout, streams, crcs = _open(codec, data, where, digest, max_pixels)
    sink = sink_for(layout.image_size)
    try:
        decode_tiles(codec, streams, crcs, layout, sink)
    except BitstreamError as e:  # name the file, as the container's own errors do
        raise BitstreamError(f"{where}: {e.message}", e.hint) from e
    return sink


class _FloatSink:
    """Collects decoded tiles into a (1, 3, H, W) float tensor."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.out = torch.empty(1, 3, *size)

    def __call__(self, y: int, x: int, tile: torch.Tensor) -> None:
        self.out[..., y : y + tile.shape[-2], x : x + tile.shape[-1]] = tile


class _PillowSink:
    """Collects decoded tiles into an RGB Pillow image (what ``codec decompress`` saves)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.out = Image.new("RGB", (size[1], size[0]))

    def __call__(self, y: int, x: int, tile: torch.Tensor) -> None:
        self.out.paste(Image.fromarray(_to_bytes(tile)), (x, y))


def _to_bytes(tile: torch.Tensor) -> np.ndarray:
    """(1, 3, h, w) floats in [0, 1] → (h, w, 3) uint8, rounded as ``to_uint8`` rounds."""
    return tile[0].mul(255).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


class _ByteSink:
    """Collects decoded tiles into an (H, W, 3) uint8 array, rounded as ``to_uint8`` rounds."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.out = np.empty((*size, 3), np.uint8)

    def __call__(self, y: int, x: int, tile: torch.Tensor) -> None:
        u8 = _to_bytes(tile)
        self.out[y : y + u8.shape[0], x : x + u8.shape[1]] = u8


class _PngSink:
    """Writes decoded tiles to a PNG as each tile row completes (tiles come in raster order):
    only one tile row of 8-bit pixels is held, never the image."""

    def __init__(self, size: tuple[int, int], fh: BinaryIO) -> None:
        self.size = size
        self.writer = PngRowWriter(fh, size[1], size[0])
        self.band: np.ndarray | None = None

    def __call__(self, y: int, x: int, tile: torch.Tensor) -> None:
        u8 = _to_bytes(tile)
        if x == 0:
            self.band = np.empty((u8.shape[0], self.size[1], 3), np.uint8)
        assert self.band is not None
        self.band[:, x : x + u8.shape[1]] = u8
        if x + u8.shape[1] == self.size[1]:  # the tile row is complete
            self.writer.write(self.band)
            self.band = None


_Sink = _FloatSink | _ByteSink | _PillowSink | _PngSink


def decode_bytes(
    codec: Codec,
    data: bytes,
    where: str = "file",
    digest: str | None = None,
    *,
    max_pixels: int | None = None,
) -> torch.Tensor:
    """Decode a file's bytes to a (1, 3, H, W) float image, refusing files of another model.

    For large images prefer :func:`decode_array` (8 bits per sample instead of 32).

    Args:
        where: names the file in errors.
        digest: the codec's ``weights_digest()``, when the caller has it already.
        max_pixels: largest image the file may claim (default ``$CODEC_MAX_PIXELS`` or 2**28).

    Raises:
        BitstreamError: the file is damaged, over the pixel limit, or of another model.
    """
    return _decode(codec, data, where, digest, max_pixels, _FloatSink).out


def decode_array(
    codec: Codec,
    data: bytes,
    where: str = "file",
    digest: str | None = None,
    *,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode a file's bytes to an (H, W, 3) uint8 image: :func:`decode_bytes`' pixels rounded
    to 8 bits (as ``to_uint8`` rounds), without a full-size float buffer.

    Raises:
        BitstreamError: as :func:`decode_bytes`.
    """
    return _decode(codec, data, where, digest, max_pixels, _ByteSink).out


def decode_image(
    codec: Codec,
    data: bytes,
    where: str = "file",
    digest: str | None = None,
    *,
    max_pixels: int | None = None,
) -> Image.Image:
    """Decode a file's bytes to an RGB Pillow image (:func:`decode_array`'s pixels), written
    tile by tile: the one full-size buffer is the image itself (``codec decompress`` saves it).

    Raises:
        BitstreamError: as :func:`decode_bytes`.
    """
    return _decode(codec, data, where, digest, max_pixels, _PillowSink).out


def decode_to_png(
    codec: Codec,
    data: bytes,
    fh: BinaryIO,
    where: str = "file",
    digest: str | None = None,
    *,
    max_pixels: int | None = None,
) -> tuple[int, int]:
    """Decode a file's bytes straight into a PNG written to ``fh``, a tile row at a time: the
    pixels :func:`decode_image` gives, without ever holding the whole image.

    Returns:
        The image's (height, width).

    Raises:
        BitstreamError: as :func:`decode_bytes` (``fh`` then holds a partial PNG: write to a
            temporary file, as ``codec decompress`` does).
    """
    sink = _decode(codec, data, where, digest, max_pixels, lambda size: _PngSink(size, fh))
    sink.writer.close()  # type: ignore[union-attr]
    return sink.size  # type: ignore[union-attr]


def read_compressed(path: str | Path) -> bytes:
    """Read a compressed file, turning OS errors into clear ones."""
    p = Path(path)
    if not p.is_file():
        raise BitstreamError(f"compressed file {p} does not exist", "check the path")
    try:
        return p.read_bytes()
    except OSError as e:
        raise BitstreamError(f"cannot read {p}: {e.strerror}") from e
