"""Image ⇄ compressed file through a codec, with every check the container allows."""

from __future__ import annotations

from pathlib import Path

import torch

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.container import Header, pack, symbols_salt, unpack
from codec_lab.corelib.errors import BitstreamError

__all__ = ["decode_bytes", "encode_image", "read_compressed"]


def encode_image(codec: Codec, x: torch.Tensor, digest: str | None = None) -> bytes:
    """Compress one (1, 3, H, W) image into a complete file's bytes.

    Args:
        digest: the codec's ``weights_digest()``, when the caller has it already.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError("encode_image takes one image shaped (1, 3, H, W)")
    image_size = (int(x.shape[-2]), int(x.shape[-1]))
    latent_size = codec.latent_size(*image_size)
    enc = codec.compress(x, crc_salt=symbols_salt(image_size, latent_size))
    if tuple(enc["shape"]) != latent_size:  # the decoder derives it from the image size
        raise codec.blame("encoder").error(
            "forward", f"coded a {image_size[0]}x{image_size[1]} image as a {tuple(enc['shape'])} latent; "
            f"its downsampling_factor and min_input_size say {latent_size}",
            "declare the downsampling_factor and min_input_size the network has")
    header = Header(
        digest=digest or codec.weights_digest(),
        image_size=image_size,
        symbol_crcs=[c[0] for c in enc["crc"]],
    )
    return pack(header, [s[0] for s in enc["strings"]])


def decode_bytes(
    codec: Codec,
    data: bytes,
    where: str = "file",
    digest: str | None = None,
    *,
    max_pixels: int | None = None,
) -> torch.Tensor:
    """Decode a file's bytes to a (1, 3, H, W) image, refusing files of another model.

    Args:
        where: names the file in errors.
        digest: the codec's ``weights_digest()``, when the caller has it already.
        max_pixels: largest image the file may claim (default ``$CODEC_MAX_PIXELS`` or 2**28).

    Raises:
        BitstreamError: the file is damaged, over the pixel limit, or of another model.
    """
    header, streams = unpack(data, where, max_pixels)
    digest = digest or codec.weights_digest()
    if header.digest != digest:
        raise BitstreamError(
            f"{where} was made by another model (model digest {header.digest}, this model {digest})",
            "decompress it with the run that made it (--model RUN)",
        )
    if len(streams) != len(codec.specs):
        raise BitstreamError(f"{where} has {len(streams)} streams; this model codes {len(codec.specs)}",
                             "the file is damaged or was made by another model")  # fmt: skip
    latent_size = codec.latent_size(*header.image_size)
    try:
        out = codec.decompress(
            [[s] for s in streams],
            latent_size,
            image_size=header.image_size,
            crc=[[k] for k in header.symbol_crcs],
            crc_salt=symbols_salt(header.image_size, latent_size),
        )
    except BitstreamError as e:  # name the file, as the container's own errors do
        raise BitstreamError(f"{where}: {e.message}", e.hint) from e
    return out["x_hat"]


def read_compressed(path: str | Path) -> bytes:
    """Read a compressed file, turning OS errors into clear ones."""
    p = Path(path)
    if not p.is_file():
        raise BitstreamError(f"compressed file {p} does not exist", "check the path")
    try:
        return p.read_bytes()
    except OSError as e:
        raise BitstreamError(f"cannot read {p}: {e.strerror}") from e
