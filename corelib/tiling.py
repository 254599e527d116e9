"""Coding an image tile by tile, so that any image size codes in bounded memory.

The file path (``corelib.files``) cuts the padded image into square coding tiles on the latent
grid (``tile`` pixels a side, a multiple of :func:`tile_unit`; 0: the whole image is one tile):

* **encoding** — each tile's pixels are read with a *halo* of neighbouring pixels
  (:func:`halos`: the encoder's measured receptive field), run through the encoder, and the
  features are cropped back to the tile; the rate plugin and the entropy coder then code the
  tile on its own (its streams are independent payloads in the file);
* **decoding** — tiles are entropy-decoded lazily into a cache that holds the latent of a few
  tile rows only; the decoder runs on each tile's latent plus a latent halo, and the tile's
  pixels are written into a preallocated output.

Pixels are read as 8-bit (a Pillow image, an array, or the caller's tensor) and turned into
floats one region at a time, and decoded tiles are written into an 8-bit output one at a time,
so peak memory is the image's 8-bit buffer plus what the networks need for one tile. Where the
halos cover the receptive fields the tiled reconstruction equals the untiled one up to float
rounding (bench/RESULTS.md, "Large images"); a tile that contains the whole image codes exactly
as ``Codec.compress`` does.
"""

from __future__ import annotations

import ctypes
import math
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.container import TILE_UNIT, symbols_salt, tile_grid
from codec_lab.corelib.errors import BitstreamError, ConfigError
from codec_lab.corelib.png_stream import PngRowReader

__all__ = [
    "DEFAULT_TILE",
    "LARGE_TILE",
    "MAX_TILE",
    "Pixels",
    "TileLayout",
    "decode_tiles",
    "encode_tiles",
    "halos",
    "resolve_tile",
    "tile_unit",
]

DEFAULT_TILE = 1024
"""Default coding-tile side in pixels: a Kodak image (768x512) is one tile, so its file and
reconstruction are those of the untiled codec; a 50-megapixel photo codes in about 1 GB."""
LARGE_TILE = 512
"""Default tile side for an image larger than one :data:`DEFAULT_TILE` tile: a network's working
set at 512 pixels (plus halo) is about a third of that at 1024 (~0.1 GB against ~0.25–0.3 GB
for the shipped models), which keeps a 50-megapixel photo under 1.5 GB with the imports, for
more halo work (48-pixel halos: 41 % of the core's encoder work, against 20 % at 1024) and a
few bytes more per tile (``bench/RESULTS.md``)."""
MAX_TILE = 16384
"""Largest tile a user may ask for (0 codes the whole image as one tile instead)."""

_PROBE = 256  # side of the image the receptive fields are measured on
_MAX_HALO_PX = 128  # halo used when a receptive field reaches past the probe


def tile_unit(codec: Codec) -> int:
    """Tile sides must be multiples of this: the codec's ``downsampling_factor`` (which includes
    a rate's own ``tile_size``) and the container's 16-pixel unit."""
    return math.lcm(TILE_UNIT, codec.downsampling_factor)


def _smallest_tile(codec: Codec) -> int:
    unit = tile_unit(codec)
    need = codec.padded_size(1, 1)[0]  # the encoder's smallest input
    return unit * -(-need // unit)


def resolve_tile(codec: Codec, tile: int | None = None, image_size: tuple[int, int] | None = None) -> int:
    """The tile side to code with: ``tile`` checked against the codec, or the default.

    Args:
        tile: pixels a side; 0 codes the image as one tile (memory grows with the image);
            None: :data:`DEFAULT_TILE` rounded up to a multiple of :func:`tile_unit`, or
            :data:`LARGE_TILE` (rounded likewise) for an ``image_size`` larger than one such
            tile; within the coder's ``max_stream_symbols`` either way.
        image_size: (H, W) of the image, when known.

    Raises:
        ConfigError: ``tile`` is not 0 nor a multiple of the unit within range; the message
            names the allowed values.
    """
    unit, low = tile_unit(codec), _smallest_tile(codec)
    default = max(low, unit * -(-DEFAULT_TILE // unit))
    if image_size is not None and tile_grid(image_size, default) != (1, 1):
        default = max(low, unit * -(-LARGE_TILE // unit))
    most = _largest_tile(codec)
    if most is not None:
        if most < low:
            raise ConfigError(f"coder {type(codec.coder).name!r} codes at most "
                              f"{type(codec.coder).max_stream_symbols:,} positions per stream, fewer "
                              f"than this model's smallest tile ({low} pixels) holds",
                              "use another coder for this model")  # fmt: skip
        default = min(default, most)
    if tile is None:
        return default
    if tile == 0 or (tile % unit == 0 and low <= tile <= min(MAX_TILE, most or MAX_TILE)):
        return tile
    if most is not None and tile % unit == 0 and most < tile <= MAX_TILE:
        raise ConfigError(f"tile size {tile} is too large for coder {type(codec.coder).name!r}, which "
                          f"codes at most {type(codec.coder).max_stream_symbols:,} positions per stream",
                          f"use a tile of at most {most} pixels (the default)")  # fmt: skip
    raise ConfigError(
        f"tile size {tile} does not suit this model",
        f"use 0 (one tile: the whole image at once) or a multiple of {unit} from {low} to "
        f"{MAX_TILE} pixels (default {default})",
    )


def _largest_tile(codec: Codec) -> int | None:
    """The largest tile side whose streams fit the coder's ``max_stream_symbols`` (None: any)."""
    cap = type(codec.coder).max_stream_symbols
    if cap is None:
        return None
    unit, f = tile_unit(codec), codec.encoder.downsampling_factor
    channels = max(s.channels for s in codec.specs)
    side = math.isqrt(cap // channels) * f  # latent side that fits, in pixels
    return side // unit * unit


@dataclass(frozen=True)
class TileLayout:
    """Where the coding tiles of an image lie, in pixels of the padded image and in latents.

    Attributes:
        image_size: (H, W) of the image.
        padded_size: the size it is coded at (``Codec.padded_size``).
        factor: the encoder's downsampling factor (pixels per latent position).
        tile: the tile side in pixels; 0: one tile covering the padded image.
    """

    image_size: tuple[int, int]
    padded_size: tuple[int, int]
    factor: int
    tile: int

    @classmethod
    def of(cls, codec: Codec, image_size: tuple[int, int], tile: int) -> TileLayout:
        """The layout ``codec`` codes an image of ``image_size`` with in ``tile``-pixel tiles."""
        return cls(image_size, codec.padded_size(*image_size), codec.encoder.downsampling_factor, tile)

    @property
    def grid(self) -> tuple[int, int]:
        """Tile rows and columns (as the container derives them)."""
        return tile_grid(self.image_size, self.tile)

    @property
    def latent_size(self) -> tuple[int, int]:
        """The whole image's latent size."""
        return self.padded_size[0] // self.factor, self.padded_size[1] // self.factor

    def core(self, ty: int, tx: int) -> tuple[int, int, int, int]:
        """Pixel rows y0:y1 and columns x0:x1 of tile (ty, tx) in the padded image."""
        ph, pw = self.padded_size
        if self.tile == 0:
            return 0, ph, 0, pw
        t = self.tile
        return ty * t, min(ph, (ty + 1) * t), tx * t, min(pw, (tx + 1) * t)

    def tiles(self) -> Iterator[tuple[int, int]]:
        """(row, column) of every tile, in raster order (the file's order)."""
        rows, cols = self.grid
        for ty in range(rows):
            for tx in range(cols):
                yield ty, tx

    def salt(self, ty: int, tx: int) -> bytes:
        """The symbol-CRC salt of tile (ty, tx) (:func:`~codec_lab.corelib.container.symbols_salt`)."""
        return symbols_salt(self.image_size, self.latent_size, self.tile, (ty, tx))


def _expand(a: int, b: int, halo: int, end: int, least: int) -> tuple[int, int]:
    """[a, b) widened by ``halo`` on both sides within [0, end), at least ``least`` long."""
    lo, hi = max(0, a - halo), min(end, b + halo)
    if hi - lo < least:  # a small last tile: take more context before it
        lo = max(0, hi - least)
    return lo, hi


class Pixels:
    """An image to encode, read one region at a time as (1, 3, h, w) floats in [0, 1].

    Args:
        image: a (1, 3, H, W) float tensor, an (H, W, 3) uint8 array, an RGB Pillow image,
            or a :class:`PngRowReader` (regions asked for in raster order of tiles); 8-bit
            values are turned into floats per region, exactly as ``load_image`` turns the
            whole image.
    """

    def __init__(self, image: torch.Tensor | np.ndarray | Image.Image | PngRowReader) -> None:
        if isinstance(image, PngRowReader):
            self.size = image.size
        elif isinstance(image, Image.Image):
            if image.mode != "RGB":
                raise ValueError(f"a Pillow image to code must be RGB, got {image.mode}")
            self.size = (image.height, image.width)
        elif isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"an image array must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
            self.size = (int(image.shape[0]), int(image.shape[1]))
        else:
            if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
                raise ValueError("encode_image takes one image shaped (1, 3, H, W)")
            self.size = (int(image.shape[-2]), int(image.shape[-1]))
        self.image = image

    def region(self, y0: int, y1: int, x0: int, x1: int, device: torch.device) -> torch.Tensor:
        """Rows y0:y1, columns x0:x1; past the bottom or right edge the last row or column
        repeats (as ``Codec.pad`` pads)."""
        h, w = self.size
        if isinstance(self.image, PngRowReader):  # tiles come in raster order: rows read forward
            part = torch.from_numpy(self.image.rows(y0, min(y1, h))[:, x0 : min(x1, w)].copy())
            x = part.to(device).permute(2, 0, 1)[None].float().div(255.0)
        elif isinstance(self.image, Image.Image):
            part = torch.from_numpy(np.array(self.image.crop((x0, y0, min(x1, w), min(y1, h)))))
            x = part.to(device).permute(2, 0, 1)[None].float().div(255.0)
        elif isinstance(self.image, np.ndarray):
            part = torch.from_numpy(self.image[y0 : min(y1, h), x0 : min(x1, w)].copy())
            x = part.to(device).permute(2, 0, 1)[None].float().div(255.0)
        else:
            x = self.image[..., y0 : min(y1, h), x0 : min(x1, w)].to(device)
        if y1 > h or x1 > w:
            x = F.pad(x, (0, max(0, x1 - w), 0, max(0, y1 - h)), mode="replicate")
        return x


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_MMAP_THRESHOLD = 256 * 1024
_malloc_tuned = False


def _return_freed_memory() -> None:
    """Make glibc hand large freed blocks back to the system at once (Linux/glibc only).

    glibc raises its mmap threshold each time a large block is freed, after which blocks of
    that size come from the heap and stay resident when freed: tile after tile, the networks'
    activations piled up (a 16.8 MP compress kept +400 MB with 512-pixel tiles). A fixed
    threshold keeps the peak at one tile's working set. Set once per process.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.malloc_trim(0)  # and return what the heap holds already (the image's decoding)
    except (OSError, AttributeError):  # not glibc after all: nothing to tune
        pass


def _device(codec: Codec) -> torch.device:
    return next(codec.parameters(), torch.empty(0)).device


def halos(codec: Codec) -> tuple[int, int]:
    """(encoder halo in pixels, decoder halo in latent positions) for this codec's networks.

    Measured once per codec: the encoder's and the decoder's receptive fields are found by
    changing one latent cell's worth of input on a 256-pixel probe and seeing how far the
    output changes (by more than float rounding), plus one cell of margin. A rate that codes
    tiles of its own (``Rate.tile_size``) has no context across them, so its halos are 0. The decoder halo
    depends only on the model, so every process decodes a file the same way.
    """
    cached = codec.__dict__.get("_tile_halos")
    if cached is not None:
        return cached
    if codec.rate.tile_size:
        result = (0, 0)
    else:
        result = (_encoder_halo(codec), _decoder_halo(codec))
    codec.__dict__["_tile_halos"] = result  # plain attribute: never in the state dict
    return result


def _reach(changed: torch.Tensor, lo: int, hi: int) -> int:
    """Largest distance of a True position of a 2-D map from the square [lo, hi)²."""
    pos = changed.nonzero()
    if pos.numel() == 0:
        return 0
    dist = torch.clamp(torch.maximum(lo - pos, pos - (hi - 1)), min=0)
    return int(dist.max())


def _differs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Where two outputs differ by more than float rounding: a convolution algorithm that mixes
    neighbouring inputs (Winograd, FFT) may move far outputs by an ULP, by thread count or CPU,
    and the halo — which decides the decoded pixels — must not depend on that."""
    return (a - b).abs() > 1e-4 * (1.0 + a.abs())


def _encoder_halo(codec: Codec) -> int:
    f = codec.encoder.downsampling_factor
    s = 2 * f * -(-_PROBE // (2 * f))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, s, s, generator=gen)
    c = s // 2
    x2 = x.clone()
    x2[..., c : c + f, c : c + f] = 1 - x2[..., c : c + f, c : c + f]
    dev = _device(codec)
    with codec.coding():
        a, b = codec.encoder(x.to(dev)), codec.encoder(x2.to(dev))
    changed = sum(_differs(a[k], b[k]).any(1)[0].int() for k in a) > 0
    reach = _reach(changed.cpu(), c // f, c // f + 1)
    if reach >= c // f - 1:  # reaches the probe's edge: the field is wider than we can see
        return _MAX_HALO_PX
    return min(_MAX_HALO_PX, (reach + 1) * f)


def _decoder_halo(codec: Codec) -> int:
    f = codec.encoder.downsampling_factor
    n = 2 * -(-_PROBE // (2 * f))
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(1, codec.encoder.latent_channels, n, n, generator=gen)
    y2 = y.clone()
    y2[..., n // 2, n // 2] += 1.0
    dev = _device(codec)
    with codec.coding():
        a, b = codec.decoder(y.to(dev)), codec.decoder(y2.to(dev))
    changed = _differs(a, b).any(1)[0].cpu()
    reach = _reach(changed, n // 2 * f, n // 2 * f + f)
    cap = -(-_MAX_HALO_PX // f)
    if reach >= n // 2 * f - 1:
        return cap
    return min(cap, -(-reach // f) + 1)


def encode_tiles(codec: Codec, pixels: Pixels, layout: TileLayout) -> tuple[list[bytes], list[int]]:
    """Entropy-code every tile: payloads and symbol CRCs, per tile (raster order), per stream.

    Raises:
        PluginError: the encoder's output does not have the latent size the codec declares.
    """
    codec.update()
    halo = halos(codec)[0] if layout.grid != (1, 1) else 0  # one tile: the whole image, no halo
    if halo or layout.grid != (1, 1):
        _return_freed_memory()
    f, (ph, pw) = layout.factor, layout.padded_size
    least = codec.padded_size(1, 1)[0]
    dev = _device(codec)
    payloads: list[bytes] = []
    crcs: list[int] = []
    with codec.coding():
        for ty, tx in layout.tiles():
            y0, y1, x0, x1 = layout.core(ty, tx)
            ry0, ry1 = _expand(y0, y1, halo, ph, least)
            rx0, rx1 = _expand(x0, x1, halo, pw, least)
            feats = codec.analysis(pixels.region(ry0, ry1, rx0, rx1, dev))
            crop = (slice((y0 - ry0) // f, (y1 - ry0) // f), slice((x0 - rx0) // f, (x1 - rx0) // f))
            streams = codec.rate_streams({k: v[..., crop[0], crop[1]].contiguous() for k, v in feats.items()})
            hw = tuple(streams[0].symbols.shape[-2:])
            if hw != ((y1 - y0) // f, (x1 - x0) // f):
                raise codec.blame("encoder").error(
                    "forward", f"coded a {y1 - y0}x{x1 - x0} tile as a {hw} latent; its "
                    f"downsampling_factor says {((y1 - y0) // f, (x1 - x0) // f)}",
                    "declare the downsampling_factor the network has")  # fmt: skip
            strings, tile_crcs = codec.encode_streams(streams, layout.salt(ty, tx))
            payloads += [s[0] for s in strings]
            crcs += [c[0] for c in tile_crcs]
    return payloads, crcs


Sink = Callable[[int, int, torch.Tensor], None]
"""Receives each decoded tile: its top row and left column in the image, and its
(1, 3, h, w) pixels in [0, 1], already cropped to the image."""


def decode_tiles(codec: Codec, payloads: list[bytes], crcs: list[int], layout: TileLayout,
                 sink: Sink) -> None:  # fmt: skip
    """Decode every tile and hand its pixels to ``sink``, in raster order.

    Only the latents of the tile rows the decoder's halo reaches are kept at any time.

    Raises:
        BitstreamError: a payload is damaged, claims more symbols than it can carry, or
            decodes to other symbols than were encoded.
    """
    n = len(codec.specs)
    rows, cols = layout.grid
    if len(payloads) != rows * cols * n or len(crcs) != len(payloads):
        raise BitstreamError(f"{len(payloads)} payloads for {rows * cols} tiles of {n} streams",
                             "the file is damaged or was made by another model")  # fmt: skip
    codec.update()
    halo = halos(codec)[1] if (rows, cols) != (1, 1) else 0
    if (rows, cols) != (1, 1):
        _return_freed_memory()
    f = layout.factor
    lh, lw = layout.latent_size
    lt = layout.tile // f if layout.tile else max(lh, lw)
    least = codec.padded_size(1, 1)[0] // f
    dev = _device(codec)
    cache: dict[tuple[int, int], torch.Tensor] = {}

    def latent(ty: int, tx: int) -> torch.Tensor:
        if (ty, tx) not in cache:
            y0, y1, x0, x1 = layout.core(ty, tx)
            k = (ty * cols + tx) * n
            cache[ty, tx] = codec.decode_latent(payloads[k : k + n], ((y1 - y0) // f, (x1 - x0) // f),
                                                crcs[k : k + n], layout.salt(ty, tx))  # fmt: skip
        return cache[ty, tx]

    h, w = layout.image_size
    with codec.coding():
        for ty in range(rows):
            for tx in range(cols):
                y0, y1, x0, x1 = (v // f for v in layout.core(ty, tx))
                ry0, ry1 = _expand(y0, y1, halo, lh, least)
                rx0, rx1 = _expand(x0, x1, halo, lw, least)
                first = latent(ty, tx)
                region = first.new_zeros(1, first.shape[1], ry1 - ry0, rx1 - rx0)
                for a in range(ry0 // lt, (ry1 - 1) // lt + 1):
                    for b in range(rx0 // lt, (rx1 - 1) // lt + 1):
                        part = latent(a, b)
                        oy, ox = a * lt, b * lt  # the part's origin in the latent
                        sy0, sy1 = max(ry0, oy), min(ry1, oy + part.shape[-2])
                        sx0, sx1 = max(rx0, ox), min(rx1, ox + part.shape[-1])
                        region[..., sy0 - ry0 : sy1 - ry0, sx0 - rx0 : sx1 - rx0] = \
                            part[..., sy0 - oy : sy1 - oy, sx0 - ox : sx1 - ox]  # fmt: skip
                x_hat = codec.synthesis(region.to(dev))
                top, left = (y0 - ry0) * f, (x0 - rx0) * f
                x_hat = x_hat[..., top : top + min(y1 * f, h) - y0 * f, left : left + min(x1 * f, w) - x0 * f]
                sink(y0 * f, x0 * f, x_hat.clamp_(0, 1))
            # The next tile row's halo starts at this latent row: drop the rows above it.
            keep_from = max(0, (ty + 1) * lt - halo) // lt
            for key in [k for k in cache if k[0] < keep_from]:
                del cache[key]
