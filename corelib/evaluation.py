"""The evaluation engine: real files for every image, quality on 8-bit reconstructions."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.container import unpack
from codec_lab.corelib.files import decode_bytes, encode_image
from codec_lab.corelib.images import load_image, save_image
from codec_lab.corelib.metrics import bpp_from_likelihoods, quality
from codec_lab.corelib.outputs import atomic_output, check_output
from codec_lab.corelib.progress import NullProgress, Progress
from codec_lab.corelib.results import Results, describe_codec

__all__ = ["evaluate", "kept_names"]


def kept_names(image: Path) -> tuple[str, str]:
    """Names of an image's compressed file and reconstruction in a ``keep_dir``.

    The full file name is kept (``a.png`` → ``a.png.cdl``), so ``a.png`` and ``a.jpg`` in one
    folder never write the same file; the reconstruction never takes an input's name.
    """
    return f"{image.name}.cdl", f"{image.name}.decoded.png"


def evaluate(
    codec: Codec,
    images: Sequence[Path],
    progress: Progress | None = None,
    keep_dir: Path | None = None,
    overwrite: bool = False,
    device: torch.device | str = "cpu",
) -> Results:
    """Compress to a real file and decompress every image; measure rate, quality, time.

    Returns the rows (see :mod:`codec_lab.corelib.results`; a rate's ``info`` scalars are
    included, and the ones it declares in ``report_columns`` are shown by every table) with
    the codec's description.

    Args:
        codec: the codec (put in eval mode and moved to ``device`` here).
        images: image files.
        progress: receives one unit per image.
        keep_dir: keep the compressed files (``NAME.cdl``) and reconstructions
            (``NAME.decoded.png``) here (default: a temporary folder, removed afterwards).
        overwrite: replace files of an earlier evaluation in ``keep_dir``; without it, any
            file already there is refused before the first image is coded.
        device: where the networks run (coding itself is on the CPU).
    """
    progress = progress or NullProgress()
    codec.to(device).eval()
    digest = codec.weights_digest()
    result = Results(codec=describe_codec(codec))
    if keep_dir is not None:
        for path in images:
            for name in kept_names(path):
                check_output(Path(keep_dir) / name, overwrite)
    progress.start("evaluating (images)", len(images))
    with tempfile.TemporaryDirectory(prefix="codec-eval-") as tmp:
        out_dir = Path(keep_dir) if keep_dir else Path(tmp)
        for path in images:
            x, notice = load_image(path)
            x = x.to(device)
            if notice:
                result.notices.append(notice)
            cdl_name, png_name = kept_names(path)
            file = out_dir / cdl_name
            t0 = time.perf_counter()
            data = encode_image(codec, x, digest)
            with atomic_output(file, overwrite=overwrite) as part:
                part.write_bytes(data)
            enc_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            x_hat = decode_bytes(codec, file.read_bytes(), str(file), digest)
            dec_s = time.perf_counter() - t1
            if keep_dir is not None:
                save_image(x_hat, out_dir / png_name, overwrite=overwrite)
            h, w = x.shape[-2:]
            with torch.no_grad():
                fwd = codec(codec.pad(x))
            _, payloads = unpack(data)
            n = len(codec.specs)  # payloads are per tile, per stream: sum each stream's tiles
            stream_bytes = [sum(len(b) for b in payloads[k::n]) for k in range(n)]
            row: dict[str, Any] = {
                "image": path.name,
                "height": h,
                "width": w,
                "bytes": file.stat().st_size,
                "bpp": file.stat().st_size * 8 / (h * w),
                # Bits of each stream (side streams vs code); the rest is the header.
                **{f"bpp_{spec.name}": k * 8 / (h * w) for spec, k in zip(codec.specs, stream_bytes,
                                                                          strict=True)},
                **quality(x, x_hat),
                "enc_s": enc_s,
                "dec_s": dec_s,
                "est_bpp": float(bpp_from_likelihoods(fwd["likelihoods"], h * w)),
                **{k: float(v) for k, v in fwd["rate"].info.items()},
            }
            result.rows.append(row)
            progress.advance(1, bpp=row["bpp"], psnr=row["psnr"])
    progress.stop()
    return result
