"""Entropy coders side by side on the same real codes: bits against ``histogram`` and against
each coder's own model, and decode speed (inclined wavefront against symbol by symbol).

    python -m bench.coders --runs RUN RUN-inclined-tcae RUN-tcae RUN-cabac [--images 24]
        [--crop-images 4] [--crop 256] [--md out.md]

The runs must share one transform (``codec fit-coder --model RUN --coder …`` makes such
runs): every coder codes the very same symbols. Measured, per coder:

* bits: the real payload of every stream (bytes × 8, no container header) on the Kodak
  images (``tcae`` only on ``--crop``² centre crops of the first ``--crop-images`` images:
  it decodes symbol by symbol, minutes per full image); the network's own cross-entropy
  (float softmax, before the integer frequencies) for the learned coders; for ``cabac`` the
  empirical conditional entropy of its own contexts (a static two-pass model of each image's
  bins, the reference an adaptive coder is measured against);
* time: encode and decode of the first image's streams (``inclined-tcae``, bit-exactness
  checked), one full-tensor pass of the same networks for scale, and the decode time of
  ``tcae`` and ``inclined-tcae`` on one ``--crop``² crop (speed-up).

Coding runs on torch's thread count (``OMP_NUM_THREADS=1`` for one thread): the coders keep
torch's part of the path on one thread and share an inclined plane's blocks among the threads,
each probability computed whole by one thread, so the files do not depend on the count.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from bench._common import kodak, machine, print_table
from codec_lab.corelib.codec import Codec
from codec_lab.corelib.images import load_image
from codec_lab.corelib.streams import Stream
from codec_lab.registry.runs import load_run


def _streams(codec: Codec, x: torch.Tensor) -> list[Stream]:
    """One image's hard streams, (C, h, w), masked positions zeroed (as the decoder sees them)."""
    with torch.no_grad():
        out = codec.streams(x)
    single = []
    for s in out:
        mask = None if s.mask is None else s.full_mask()[0]
        sym = s.symbols[0] if mask is None else torch.where(mask, s.symbols[0], 0)
        single.append(Stream(s.spec, sym, mask))
    return single


def _context(streams: list[Stream], i: int) -> dict[str, Stream]:
    return {s.spec.name: s for s in streams[:i]}


def _cross_entropy(codec: Codec, streams: list[Stream]) -> float:
    """The learned coder's float cross-entropy in bits over the sent symbols (fit_loss × count)."""
    coder = codec.coder
    batched = [Stream(s.spec, s.symbols[None], None if s.mask is None else s.mask[None]) for s in streams]
    count = sum(int(s.full_mask().sum()) for s in batched)
    with torch.no_grad():
        return float(coder.fit_loss(batched)) * count  # type: ignore[attr-defined]


def _static_bits(codec: Codec, streams: list[Stream]) -> float:
    """``cabac``: each image's empirical conditional entropy of the bins in the coder's contexts."""
    import numpy as np

    from codec_lab.plugins.coders.common import binary_coder

    total = 0.0
    for s in streams:
        layout = codec.coder.layouts[s.spec.name]  # type: ignore[attr-defined]
        counts = np.zeros((layout.contexts, 2), dtype=np.int64)
        binary_coder.count_bins(s.symbols.numpy(), s.full_mask().numpy(), layout, counts)
        n = counts.sum(1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(counts > 0, counts / np.maximum(n, 1), 1.0)
        total += float(-(counts * np.log2(p)).sum())
    return total


def _bits(codec: Codec, streams: list[Stream]) -> tuple[int, float]:
    """Real payload bits of every stream, and the likelihoods' bits (the quantized model)."""
    real, est = 0, 0.0
    for i, s in enumerate(streams):
        ctx = _context(streams, i)
        real += 8 * len(codec.coder.encode(s, ctx))
        b = Stream(s.spec, s.symbols[None], None if s.mask is None else s.mask[None])
        bctx = {k: Stream(v.spec, v.symbols[None], None if v.mask is None else v.mask[None])
                for k, v in ctx.items()}  # fmt: skip
        with torch.no_grad():
            est += float(-torch.log2(codec.coder.likelihoods(b, bctx).double()).sum())
    return real, est


def _time_coding(codec: Codec, streams: list[Stream], check: bool = True) -> tuple[float, float]:
    """Encode and decode time of all streams (decoded symbols checked against the input)."""
    t0 = time.perf_counter()
    data = [codec.coder.encode(s, _context(streams, i)) for i, s in enumerate(streams)]
    t1 = time.perf_counter()
    for i, (s, d) in enumerate(zip(streams, data, strict=True)):
        dec = codec.coder.decode(d, s.spec, tuple(s.symbols.shape), s.mask, _context(streams, i))
        if check and not torch.equal(dec, s.symbols):
            raise SystemExit(f"{type(codec.coder).name}: stream {s.spec.name} did not round-trip")
    return t1 - t0, time.perf_counter() - t1


def _full_pass(codec: Codec, streams: list[Stream]) -> float:
    """One full-tensor pass of the coder's networks on the streams (single-threaded)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batched = [Stream(s.spec, s.symbols[None], None if s.mask is None else s.mask[None]) for s in streams]
        with torch.no_grad():
            t0 = time.perf_counter()
            for i, s in enumerate(batched):
                codec.coder._logits(s, {p.spec.name: p for p in batched[:i]})  # type: ignore[attr-defined]
            return time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)


def _crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return x[..., top : top + size, left : left + size]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, nargs="+", required=True,
                    help="runs sharing one transform, e.g. RUN-inclined-tcae RUN-tcae RUN-histogram")
    ap.add_argument("--images", type=int, default=None, help="first N Kodak images (default all)")
    ap.add_argument("--crop-images", type=int, default=4, help="images whose centre crop tcae codes")
    ap.add_argument("--crop", type=int, default=256, help="crop size for tcae and the speed-up")
    ap.add_argument("--md", type=Path, default=None, help="write the Markdown tables here")
    ap.add_argument("--no-speed", action="store_true", help="bits only, no timing")
    args = ap.parse_args()
    codecs = {type(c.coder).name: c for c in (load_run(r) for r in args.runs)}
    first = next(iter(codecs.values()))
    images = kodak(args.images)
    print(machine())

    # ---- bits on full images (every coder but the symbol-by-symbol reference)
    totals = {name: [0, 0.0, 0.0] for name in codecs}  # real bits, likelihood bits, float CE
    pixels = 0
    crop_totals = {name: [0, 0.0] for name in codecs}
    crop_pixels = 0
    for n, path in enumerate(images):
        x = load_image(path)[0]
        streams = _streams(first, x)
        pixels += x.shape[-2] * x.shape[-1]
        for name, codec in codecs.items():
            if name == "tcae":
                continue
            real, est = _bits(codec, streams)
            totals[name][0] += real
            totals[name][1] += est
            if codec.coder.fitting == "trained":
                totals[name][2] += _cross_entropy(codec, streams)
            elif name == "cabac":
                totals[name][2] += _static_bits(codec, streams)
        if n < args.crop_images:
            xc = _crop(x, args.crop)
            cs = _streams(first, xc)
            crop_pixels += xc.shape[-2] * xc.shape[-1]
            for name, codec in codecs.items():
                real, est = _bits(codec, cs)
                crop_totals[name][0] += real
                crop_totals[name][1] += est
        print(f"  {path.name}: done", flush=True)

    rows = []
    hist = totals.get("histogram", [0])[0]
    for name, (real, est, ce) in totals.items():
        if name == "tcae":
            continue
        rows.append([name, f"{real / pixels:.4f}", f"{est / pixels:.4f}",
                     f"{ce / pixels:.4f}" if ce else "–",
                     f"{100 * (real - ce) / ce:+.2f} %" if ce else "–",
                     f"{100 * (real - hist) / hist:+.2f} %" if hist else "–"])  # fmt: skip
    md = [print_table(f"Stream bits on {len(images)} Kodak image(s), bits per pixel (own model: the "
                      "network's cross-entropy; for cabac the static two-pass entropy of its contexts)",
                      ["coder", "real bpp", "likelihood bpp", "own model bpp", "real vs own model",
                       "vs histogram"], rows)]  # fmt: skip
    if crop_pixels:
        rows = []
        hist = crop_totals.get("histogram", [0])[0]
        for name, (real, est) in crop_totals.items():
            rows.append([name, f"{real / crop_pixels:.4f}", f"{est / crop_pixels:.4f}",
                         f"{100 * (real - hist) / hist:+.2f} %" if hist else "–"])  # fmt: skip
        n_crops = min(args.crop_images, len(images))
        md.append(print_table(f"Stream bits on {args.crop}² centre crops of {n_crops} Kodak image(s), "
                              "bits per pixel", ["coder", "real bpp", "likelihood bpp",
                                                                 "vs histogram"], rows))  # fmt: skip

    if args.no_speed:
        if args.md:
            args.md.write_text(f"{machine()}\n\n" + "\n\n".join(md) + "\n")
        return
    # ---- speed
    x = load_image(images[0])[0]
    rows = []
    if "inclined-tcae" in codecs:
        codec = codecs["inclined-tcae"]
        streams = _streams(first, x)
        enc, dec = _time_coding(codec, streams)
        full = _full_pass(codec, streams)
        hw = f"{x.shape[-1]}×{x.shape[-2]}"
        rows.append(["inclined-tcae", hw, f"{enc:.2f}", f"{dec:.2f}", f"{full:.3f}",
                     f"{dec / enc:.2f}", f"{dec / full:.1f}"])  # fmt: skip
    xc = _crop(x, args.crop)
    cs = _streams(first, xc)
    decode = {}
    for name in ("inclined-tcae", "tcae"):
        if name in codecs:
            enc, dec = _time_coding(codecs[name], cs)
            full = _full_pass(codecs[name], cs)
            decode[name] = dec
            rows.append([name, f"{args.crop}²", f"{enc:.2f}", f"{dec:.2f}", f"{full:.3f}",
                         f"{dec / enc:.2f}", f"{dec / full:.1f}"])  # fmt: skip
    md.append(print_table("Coding time (s, one thread; full pass = the same networks in one tensor pass)",
                          ["coder", "image", "encode", "decode", "full pass", "decode/encode",
                           "decode/full pass"], rows))  # fmt: skip
    if len(decode) == 2:
        c = first.specs
        steps = {name: sum((s.channels + cs[i].symbols.shape[-2] + cs[i].symbols.shape[-1] - 2)
                           if name == "inclined-tcae" else math.prod(cs[i].symbols.shape)
                           for i, s in enumerate(c)) for name in decode}  # fmt: skip
        speedup = decode["tcae"] / decode["inclined-tcae"]
        md.append(print_table(f"Decode speed-up on a {args.crop}² crop", ["tcae steps", "inclined steps",
                              "tcae decode s", "inclined decode s", "speed-up"],
                              [[steps["tcae"], steps["inclined-tcae"], f"{decode['tcae']:.2f}",
                                f"{decode['inclined-tcae']:.3f}", f"{speedup:.0f}×"]]))  # fmt: skip
    if args.md:
        args.md.write_text(f"{machine()}\n\n" + "\n\n".join(md) + "\n")


if __name__ == "__main__":
    main()
