"""Compress/decompress time per Kodak image: a trained run against CompressAI's
``bmshj2018-factorized``, in the same process on the same CPU, reported as a ratio; and the
run's real bpp (file bytes) against its estimated bpp (likelihoods).

    python bench/speed.py --model runs/admm-cpu [--images 24] [--threads 2] [--md out.md]
    python bench/speed.py --same-weights [--quality 1]     # framework overhead alone

``--same-weights`` codes with our ``gdn + noise + entropy + factorized`` codec carrying the
reference's own weights (byte-identical files): the ratio is then the cost of the framework
(container, checksums, padding) around the same network and coder.

CompressAI's pretrained weights cannot be downloaded here, so the reference runs with
``pretrained=False`` after ``update(force=True)``: the transforms cost the same, and the rANS
coder codes the same number of symbols (its tables are those of an untrained prior, which
we report as is; its bpp is not a quality reference).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from compressai.zoo import bmshj2018_factorized

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import kodak, machine, mean, print_table  # noqa: E402

from codec_lab.corelib.container import unpack  # noqa: E402
from codec_lab.corelib.files import decode_bytes, encode_image  # noqa: E402
from codec_lab.corelib.images import load_image  # noqa: E402
from codec_lab.corelib.metrics import bpp_from_likelihoods  # noqa: E402
from codec_lab.registry.compressai_zoo import from_factorized_prior  # noqa: E402
from codec_lab.registry.runs import load_run  # noqa: E402


def _params(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def _time_ours(codec, x: torch.Tensor, digest: str) -> tuple[float, float, int, int, float]:
    t0 = time.perf_counter()
    data = encode_image(codec, x, digest)
    t1 = time.perf_counter()
    decode_bytes(codec, data, "bench", digest)
    t2 = time.perf_counter()
    with torch.no_grad():
        est = float(bpp_from_likelihoods(codec(codec.pad(x))["likelihoods"], x.shape[-2] * x.shape[-1]))
    payload = sum(len(s) for s in unpack(data)[1])
    return t1 - t0, t2 - t1, len(data), payload, est


def _time_compressai(net, x: torch.Tensor) -> tuple[float, float, int]:
    with torch.no_grad():
        t0 = time.perf_counter()
        enc = net.compress(x)
        t1 = time.perf_counter()
        net.decompress(enc["strings"], enc["shape"])
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, sum(len(s[0]) for s in enc["strings"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="run folder from `codec build`")
    ap.add_argument("--same-weights", action="store_true",
                    help="our codec with the reference's weights (framework overhead)")
    ap.add_argument("--images", type=int, default=None, help="first N Kodak images (default all)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    ap.add_argument("--quality", type=int, default=1, help="bmshj2018-factorized quality (1-8)")
    ap.add_argument("--md", type=Path, default=None, help="write the Markdown table here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if (args.model is None) == (not args.same_weights):
        ap.error("pass --model RUN or --same-weights")
    ref = bmshj2018_factorized(quality=args.quality, pretrained=False).eval()
    ref.update(force=True)
    codec = (from_factorized_prior(ref.state_dict()) if args.same_weights else load_run(args.model)).eval()
    name = f"gdn+entropy with bmshj2018-factorized q{args.quality}'s weights" if args.same_weights \
        else args.model.name
    digest = codec.weights_digest()
    images = kodak(args.images)

    # Warm up both (first calls allocate and build tables).
    x0, _ = load_image(images[0])
    _time_ours(codec, x0, digest)
    _time_compressai(ref, x0)

    rows, acc = [], []
    for path in images:
        x, _ = load_image(path)
        pixels = x.shape[-2] * x.shape[-1]
        oe, od, ob, op, est = _time_ours(codec, x, digest)
        ce, cd, _ = _time_compressai(ref, x)
        bpp, pay = ob * 8 / pixels, op * 8 / pixels
        acc.append((oe, od, ce, cd, bpp, pay, est))
        rows.append((path.stem, f"{oe:.3f}", f"{od:.3f}", f"{ce:.3f}", f"{cd:.3f}", f"{oe / ce:.2f}",
                     f"{od / cd:.2f}", f"{bpp:.4f}", f"{est:.4f}", f"{(bpp / est - 1) * 100:+.2f}%",
                     f"{(pay / est - 1) * 100:+.2f}%"))  # fmt: skip
    cols = list(zip(*acc, strict=True))
    m = [mean(c) for c in cols]
    rows.append(("mean", f"{m[0]:.3f}", f"{m[1]:.3f}", f"{m[2]:.3f}", f"{m[3]:.3f}",
                 f"{m[0] / m[2]:.2f}", f"{m[1] / m[3]:.2f}", f"{m[4]:.4f}", f"{m[6]:.4f}",
                 f"{(m[4] / m[6] - 1) * 100:+.2f}%", f"{(m[5] / m[6] - 1) * 100:+.2f}%"))  # fmt: skip
    title = (f"{name} ({_params(codec):.2f} M params) vs bmshj2018-factorized q{args.quality} "
             f"({_params(ref):.2f} M params), {len(images)} Kodak images — {machine()}")
    md = print_table(title, ["image", "ours enc s", "ours dec s", "cai enc s", "cai dec s", "enc ratio",
                             "dec ratio", "file bpp", "est. bpp", "file vs est.", "payload vs est."],
                     rows)  # fmt: skip
    if args.md:
        args.md.write_text(f"### {title}\n\n{md}\n")


if __name__ == "__main__":
    main()
