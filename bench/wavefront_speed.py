"""Decode speed of ``inclined-tcae`` against the symbol-by-symbol ``tcae``, without a trained run.

    OMP_NUM_THREADS=1 python -m bench.wavefront_speed [--codes importance admm] [--size 256|768x512]
        [--threads 1 2] [--no-tcae] [--compare-rev HEAD] [--repeat 3] [--profile] [--md out.md]
        [--preset paper|cpu|quick]

Builds both coders at a training preset's network size (``--preset``, default ``paper``: the
TPAMI size, width 8 per code channel, a 32-wide map network, three residual blocks; ``cpu``,
what a ``--preset cpu`` build trains: width 4, a 16-wide map network, one residual block;
kernel 5, output kernel 3 for all) with seeded random, non-zero weights for the latent of one
``--size`` crop (1/8 resolution), draws random symbols and times, through the coders' own
``encode`` / ``decode`` (one thread unless ``--threads`` says more), every stream of the code,
decoded symbols checked against the originals:

* ``full pass``: one full-tensor pass of the same networks (what ``likelihoods()`` costs);
* ``inclined-tcae`` encode and decode (best of ``--repeat``; the first encode also arranges
  the networks' weights for the kernel, which later calls reuse: printed apart), at each
  ``--threads`` count (the coders' thread count is torch's at the call: a plane's blocks are
  shared among them; the files are checked identical across counts);
* ``tcae`` decode (C·H·W steps, one symbol each, so one thread; timed once, after one encode);
* with ``--compare-rev REV``: the same with the wavefront and kernel modules of git revision
  ``REV`` (read with ``git show``; that kernel compiled into a temporary folder, ~12 s), in
  the same process, interleaved with the current one.

Codes: ``importance`` — the map (one channel, alphabet 16, a side stream) and the 32-channel
code (alphabet 8) masked by it, the code conditioned on its mask and the map (33,792 symbols
for tcae); ``admm`` — one 32-channel stream, alphabet 31, no mask (32,768). Timings on a
loaded machine are noisy in absolute terms: compare rows of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from bench._common import machine, print_table
from codec_lab.corelib.streams import Stream, StreamSpec
from codec_lab.corelib.testing import setup_coder
from codec_lab.plugins.coders.common import wavefront as wavefront_module
from codec_lab.plugins.coders.common.wavefront import step_count
from codec_lab.plugins.coders.common.wavefront_pool import compile_kernel
from codec_lab.plugins.coders.tcae import PRESETS, InclinedTcaeCoder, TcaeCoder

COMMON_DIR = "plugins/coders/common"


def _coder(cls: type[TcaeCoder], specs: list[StreamSpec], seed: int, preset: str = "paper") -> TcaeCoder:
    """A fitted coder at ``preset``'s size with seeded random weights (output layer included:
    a fresh one is all zeros, the uniform model, which skips the network)."""
    torch.manual_seed(seed)
    coder = cls(**PRESETS[preset])
    setup_coder(coder, specs)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for net in coder.nets.values():
            net.out.weight.copy_(torch.randn(net.out.weight.shape, generator=gen) * 0.1)
            net.out.bias.copy_(torch.randn(net.out.bias.shape, generator=gen) * 0.1)
            for act in net.modules():
                if isinstance(act, torch.nn.PReLU):  # per-channel slopes, not all 0.25
                    act.weight.copy_(torch.rand(act.weight.shape, generator=gen) * 0.5)
    coder.fit_end()
    return coder.eval()


def _streams(code: str, grid: tuple[int, int], seed: int) -> list[Stream]:
    gen = torch.Generator().manual_seed(seed)
    if code == "admm":
        return [Stream(StreamSpec("y", 32, 31), torch.randint(0, 31, (32, *grid), generator=gen))]
    levels, channels = 16, 32
    mp = torch.randint(0, levels, (1, *grid), generator=gen)
    mask = torch.arange(channels).view(-1, 1, 1) < (mp * (channels // levels) + channels // levels)
    y = torch.randint(0, 8, (channels, *grid), generator=gen)
    return [Stream(StreamSpec("map", 1, levels, side=True), mp),
            Stream(StreamSpec("y", channels, 8), torch.where(mask, y, 0), mask)]  # fmt: skip


def _size(text: str) -> tuple[int, int]:
    """``256`` → (256, 256); ``768x512`` → (768, 512): width, height in pixels."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) >= 8 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: give N or WxH in pixels, each at least 8")
    return (int(parts[0]), int(parts[-1]))


def _context(streams: list[Stream], i: int) -> dict[str, Stream]:
    return {s.spec.name: s for s in streams[:i]}


def _encode(coder: TcaeCoder, streams: list[Stream]) -> tuple[float, list[bytes]]:
    t0 = time.perf_counter()
    data = [coder.encode(s, _context(streams, i)) for i, s in enumerate(streams)]
    return time.perf_counter() - t0, data


def _decode(coder: TcaeCoder, streams: list[Stream], data: list[bytes]) -> float:
    t0 = time.perf_counter()
    for i, (s, d) in enumerate(zip(streams, data, strict=True)):
        dec = coder.decode(d, s.spec, tuple(s.symbols.shape), s.mask, _context(streams, i))
        if not torch.equal(dec, s.symbols):
            raise SystemExit(f"{coder.name}: stream {s.spec.name} did not round-trip")
    return time.perf_counter() - t0


def _full_pass(coder: TcaeCoder, streams: list[Stream]) -> float:
    batched = [Stream(s.spec, s.symbols[None], None if s.mask is None else s.mask[None]) for s in streams]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            t0 = time.perf_counter()
            for i, s in enumerate(batched):
                coder._logits(s, _context(batched, i))
            return time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)


def _wavefront_of(rev: str) -> type:
    """The ``Wavefront`` class of git revision ``rev``: that revision's ``wavefront*.py``
    modules (the class, its kernel and whatever else they import from one another), written
    to a temporary folder under tagged names and imported from there, so numba compiles and
    caches that kernel like any module."""

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], capture_output=True, text=True, check=True).stdout

    tag = f"at_{abs(hash(rev))}"
    folder = Path(tempfile.mkdtemp(prefix="wavefront_"))
    for path in git("ls-tree", "--name-only", f"{rev}:{COMMON_DIR}").split():
        if path.startswith("wavefront") and path.endswith(".py"):
            src = re.sub(r"codec_lab\.plugins\.coders\.common\.(wavefront\w*)", rf"\1_{tag}",
                         git("show", f"{rev}:{COMMON_DIR}/{path}"))  # fmt: skip
            (folder / f"{path[:-3]}_{tag}.py").write_text(src)
    sys.path.insert(0, str(folder))
    return importlib.import_module(f"wavefront_{tag}").Wavefront


@contextlib.contextmanager
def _using(wavefront: type | None, threads: int = 1) -> Iterator[None]:
    """Run the coders with another ``Wavefront`` class (None: the current one), torch (and so
    the coders) on ``threads`` threads."""
    current, before = wavefront_module.Wavefront, torch.get_num_threads()
    if wavefront is not None and "threads" not in inspect.signature(wavefront).parameters:
        # an older Wavefront without threads: it runs on one
        wavefront_module.Wavefront = lambda net, h, w, cond=None, threads=1: wavefront(net, h, w, cond)  # type: ignore[misc,assignment]
    elif wavefront is not None:
        wavefront_module.Wavefront = wavefront  # type: ignore[misc]
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        wavefront_module.Wavefront = current  # type: ignore[misc]
        torch.set_num_threads(before)


def _code(code: str, args: argparse.Namespace, old: type | None) -> list[list[object]]:
    """The table rows of one code."""
    grid = (args.size[1] // 8, args.size[0] // 8)
    streams = _streams(code, grid, args.seed)
    specs = [s.spec for s in streams]
    steps = {order: sum(step_count(order, s.spec.channels, *grid) for s in streams)
             for order in ("inclined", "raster")}  # fmt: skip
    inclined = _coder(InclinedTcaeCoder, specs, args.seed + 10, args.preset)
    full = min(_full_pass(inclined, streams) for _ in range(args.repeat))
    rev = args.compare_rev
    many = [t for t in args.threads if t > 1]
    variants = [("", None, 1)] + [(f", {t} threads", None, t) for t in many]
    if old is not None:
        variants += [(f" @{rev}", old, 1)] + [(f" @{rev}, {t} threads", old, t) for t in many]
    best: dict[str, tuple[float, float]] = {}
    files: dict[str, list[bytes]] = {}
    t0 = time.perf_counter()
    for net in inclined.nets.values():
        wavefront_module._Tables(net)
    print(f"{code}: weights arranged for the kernel (once per network) in {time.perf_counter() - t0:.3f} s")
    for _ in range(args.repeat):  # variants interleaved: each sees the same load
        for label, wf, threads in variants:
            with _using(wf, threads):
                enc, data = _encode(inclined, streams)
                dec = _decode(inclined, streams, data)
            files[label] = data
            e0, d0 = best.get(label, (float("inf"), float("inf")))
            best[label] = (min(e0, enc), min(d0, dec))
    for label, wf, _ in variants:
        if wf is None and files[label] != files[""]:
            raise SystemExit(f"{code}: inclined-tcae files{label} differ from one thread's")
    if many:
        print(f"{code}: inclined-tcae files identical at 1 and {', '.join(map(str, many))} threads")
    if old is not None:
        with _using(old):
            _, before = _encode(inclined, streams)
        _, after = _encode(inclined, streams)
        print(f"{code}: inclined-tcae files {'identical to' if before == after else 'differ from'} @{rev}'s")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        _, data = _encode(inclined, streams)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            _decode(inclined, streams, data)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    tcae: dict[str, float] = {}
    if not args.no_tcae:  # once each: C·H·W steps
        raster = _coder(TcaeCoder, specs, args.seed + 10, args.preset)
        for label, wf, threads in variants:
            if threads == 1:
                with _using(wf):
                    _, data = _encode(raster, streams)
                    tcae[label] = _decode(raster, streams, data)
    rows: list[list[object]] = []
    for label, _, _ in variants:
        if label in tcae:
            rows.append([code, f"tcae{label}", steps["raster"], "–", f"{tcae[label]:.2f}", "–", "–"])
    ref = tcae.get("", float("nan"))
    for label, (enc, dec) in best.items():
        speedup = f"{ref / dec:.0f}×" if ref == ref else "–"
        own = tcae.get(label, float("nan"))
        if label and own == own:
            speedup += f" ({own / dec:.0f}× vs tcae{label})"
        rows.append([code, f"inclined-tcae{label}", steps["inclined"], f"{enc:.3f}", f"{dec:.3f}",
                     f"{dec / full:.1f}", speedup])  # fmt: skip
    rows.append([code, "full pass", 1, "–", f"{full:.3f}", "1", "–"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codes", nargs="+", default=["importance", "admm"], choices=["importance", "admm"])
    ap.add_argument("--size", type=_size, default=(256, 256),
                    help="crop size in pixels, N or WxH, e.g. 768x512 (latent: 1/8 of it)")  # fmt: skip
    ap.add_argument("--repeat", type=int, default=3, help="inclined encode/decode repetitions (best kept)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="inclined-tcae thread counts to time")
    ap.add_argument("--no-tcae", action="store_true", help="skip the (slow) tcae encode and decode")
    ap.add_argument("--compare-rev", help="also time both coders with this git revision's wavefront code")
    ap.add_argument("--profile", action="store_true", help="top operators of one inclined decode")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="paper", help="the coders' network size")
    ap.add_argument("--md", type=Path, help="also write the table here (Markdown)")
    args = ap.parse_args()
    print(machine())
    t0 = time.perf_counter()
    compile_kernel()  # numba: compiled once (or loaded from its cache), not timed below
    print(f"wavefront kernel compiled or loaded in {time.perf_counter() - t0:.1f} s")
    old = _wavefront_of(args.compare_rev) if args.compare_rev else None
    rows = [row for code in args.codes for row in _code(code, args, old)]
    width, height = args.size
    md = print_table(
        f"Coding time on a {width}×{height} crop's latent ({width // 8}×{height // 8}), one thread unless "
        f"said, {args.preset}-size networks, random weights (s; inclined-tcae and the full pass: best of the "
        "repetitions)",
        ["codes", "coder", "steps", "encode s", "decode s", "decode / full pass", "decode speed-up vs tcae"],
        rows,
    )  # fmt: skip
    print(md)
    if args.md:
        args.md.write_text(md + "\n")


if __name__ == "__main__":
    main()
