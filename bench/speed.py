"""Compress/decompress time per Kodak image: a trained run against CompressAI's
``bmshj2018-factorized``, in the same process on the same CPU, reported as a ratio; and the
run's real bpp (file bytes) against its estimated bpp (likelihoods).

    python -m bench.speed --model runs/admm-cpu [--images 24] [--threads 2] [--md out.md]
    python -m bench.speed --same-weights [--quality 1]     # framework overhead alone

``--same-weights`` codes with our ``gdn + noise + entropy + factorized`` codec carrying the
reference's own weights (byte-identical payloads): the ratio is then the cost of the framework
(container, checksums, digest, padding) around the same network and coder.

Our side is timed as ``codec compress`` / ``codec decompress`` run it: whole files through
``encode_image`` / ``decode_bytes``, the model digest looked up on every call
(``--given-digest`` passes it in, as ``codec eval`` does). Each image is coded ``--repeat``
times, alternating ours and CompressAI's (and which goes first), and the fastest time of each
is kept: on a shared machine the minimum is what the code costs, the rest is other processes.

CompressAI's pretrained weights cannot be downloaded here, so the reference runs with
``pretrained=False`` after ``update(force=True)``: the transforms cost the same, and the rANS
coder codes the same number of symbols (its tables are those of an untrained prior, which
we report as is; its bpp is not a quality reference).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from compressai.zoo import bmshj2018_factorized

from bench._common import kodak, machine, mean, print_table
from codec_lab.corelib.container import unpack
from codec_lab.corelib.files import decode_bytes, encode_image
from codec_lab.corelib.images import load_image
from codec_lab.corelib.metrics import bpp_from_likelihoods
from codec_lab.registry.compressai_zoo import from_factorized_prior
from codec_lab.registry.runs import load_run


def _params(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def _time_ours(codec, x: torch.Tensor, digest: str | None) -> tuple[float, float, bytes]:
    t0 = time.perf_counter()
    data = encode_image(codec, x, digest)
    t1 = time.perf_counter()
    decode_bytes(codec, data, "bench", digest)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, data


def _time_compressai(net, x: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        t0 = time.perf_counter()
        enc = net.compress(x)
        t1 = time.perf_counter()
        net.decompress(enc["strings"], enc["shape"])
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="run folder from `codec build`")
    ap.add_argument("--same-weights", action="store_true",
                    help="our codec with the reference's weights (framework overhead)")
    ap.add_argument("--images", type=int, default=None, help="first N Kodak images (default all)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    ap.add_argument("--quality", type=int, default=1, help="bmshj2018-factorized quality (1-8)")
    ap.add_argument("--repeat", type=int, default=3, help="codings per image; the fastest counts")
    ap.add_argument("--given-digest", action="store_true",
                    help="pass the model digest in (as `codec eval` does) instead of looking it up")
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
    digest = codec.weights_digest() if args.given_digest else None
    images = kodak(args.images)

    # Warm up both (first calls allocate and build tables).
    x0, _ = load_image(images[0])
    _time_ours(codec, x0, digest)
    _time_compressai(ref, x0)

    rows, acc = [], []
    for path in images:
        x, _ = load_image(path)
        pixels = x.shape[-2] * x.shape[-1]
        best = [float("inf")] * 4
        for i in range(max(1, args.repeat)):
            if i % 2:  # alternate who goes first: neither side inherits the other's warm caches
                ce, cd = _time_compressai(ref, x)
                oe, od, data = _time_ours(codec, x, digest)
            else:
                oe, od, data = _time_ours(codec, x, digest)
                ce, cd = _time_compressai(ref, x)
            best = [min(b, t) for b, t in zip(best, (oe, od, ce, cd), strict=True)]
        oe, od, ce, cd = best
        with torch.no_grad():
            est = float(bpp_from_likelihoods(codec(codec.pad(x))["likelihoods"], pixels))
        payload = sum(len(s) for s in unpack(data)[1])
        bpp, pay = len(data) * 8 / pixels, payload * 8 / pixels
        acc.append((oe, od, ce, cd, bpp, pay, est, len(data) - payload))
        rows.append((path.stem, f"{oe:.3f}", f"{od:.3f}", f"{ce:.3f}", f"{cd:.3f}", f"{oe / ce:.3f}",
                     f"{od / cd:.3f}", f"{bpp:.4f}", f"{est:.4f}", f"{(bpp / est - 1) * 100:+.2f}%",
                     f"{(pay / est - 1) * 100:+.2f}%", len(data) - payload))  # fmt: skip
    cols = list(zip(*acc, strict=True))
    m = [mean(c) for c in cols]
    rows.append(("mean", f"{m[0]:.3f}", f"{m[1]:.3f}", f"{m[2]:.3f}", f"{m[3]:.3f}",
                 f"{m[0] / m[2]:.3f}", f"{m[1] / m[3]:.3f}", f"{m[4]:.4f}", f"{m[6]:.4f}",
                 f"{(m[4] / m[6] - 1) * 100:+.2f}%", f"{(m[5] / m[6] - 1) * 100:+.2f}%",
                 f"{m[7]:.1f}"))  # fmt: skip
    how = "digest given" if args.given_digest else "digest looked up per call"
    title = (f"{name} ({_params(codec):.2f} M params) vs bmshj2018-factorized q{args.quality} "
             f"({_params(ref):.2f} M params), {len(images)} Kodak images, fastest of {args.repeat}, "
             f"{how} — {machine()}")  # fmt: skip
    md = print_table(title, ["image", "ours enc s", "ours dec s", "cai enc s", "cai dec s", "enc ratio",
                             "dec ratio", "file bpp", "est. bpp", "file vs est.", "payload vs est.",
                             "container B"], rows)  # fmt: skip
    # The ratio of the means weighs large images more; the median of the per-image ratios is
    # the sturdier figure when other processes share the machine.
    enc_med = statistics.median(a[0] / a[2] for a in acc)
    dec_med = statistics.median(a[1] / a[3] for a in acc)
    summary = (f"ratio of means: encode {m[0] / m[2]:.3f}, decode {m[1] / m[3]:.3f}; median per-image "
               f"ratio: encode {enc_med:.3f}, decode {dec_med:.3f}; container {m[7]:.1f} bytes per file")
    print(summary)
    if args.md:
        args.md.write_text(f"### {title}\n\n{md}\n\n{summary}\n")


if __name__ == "__main__":
    main()
