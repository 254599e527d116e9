"""Image ⇄ compressed file through a codec, with every check the container allows."""

from __future__ import annotations

from pathlib import Path

import torch

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.container import Header, pack, unpack
from codec_lab.corelib.errors import BitstreamError

__all__ = ["component_tags", "decode_bytes", "encode_image", "read_compressed"]


def component_tags(codec: Codec) -> dict[str, str]:
    """``kind -> name@version`` of a codec's components, as written into files."""
    return {k: f"{n}@{v}" for k, (n, v) in codec.components().items()}


def encode_image(codec: Codec, x: torch.Tensor, digest: str | None = None) -> bytes:
    """Compress one (1, 3, H, W) image into a complete file's bytes."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError("encode_image takes one image shaped (1, 3, H, W)")
    enc = codec.compress(x)
    header = Header(
        components=component_tags(codec),
        digest=digest or codec.weights_digest(),
        image_size=tuple(enc["image_size"]),  # type: ignore[arg-type]
        latent_size=tuple(enc["shape"]),  # type: ignore[arg-type]
        lengths=[],
        symbol_crcs=[c[0] for c in enc["crc"]],
    )
    return pack(header, [s[0] for s in enc["strings"]])


def decode_bytes(
    codec: Codec, data: bytes, where: str = "file", digest: str | None = None
) -> torch.Tensor:
    """Decode a file's bytes to a (1, 3, H, W) image, refusing files of another model."""
    header, streams = unpack(data, where)
    ours = component_tags(codec)
    if header.components != ours:
        theirs = ", ".join(f"{k}={v}" for k, v in header.components.items())
        raise BitstreamError(
            f"{where} was made by a different codec ({theirs})",
            "decompress it with the run that made it (--model RUN)",
        )
    digest = digest or codec.weights_digest()
    if header.digest != digest:
        raise BitstreamError(
            f"{where} was made by another model (weights {header.digest}, this model {digest})",
            "decompress it with the run that made it (--model RUN)",
        )
    if len(streams) != len(codec.specs):
        raise BitstreamError(f"{where} has {len(streams)} streams, the model codes "
                             f"{len(codec.specs)}")
    out = codec.decompress(
        [[s] for s in streams],
        header.latent_size,
        image_size=header.image_size,
        crc=[[k] for k in header.symbol_crcs],
    )
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
