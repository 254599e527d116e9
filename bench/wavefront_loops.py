"""Time per (tap, channel) pair of each inner loop of the wavefront kernel.

    python -m bench.wavefront_loops [--pairs 3000] [--calls 2000]

The kernel (``plugins/coders/common/wavefront_kernel.py``) gives a block's rows of a step to
calls of 32, 16, 4 or 1 rows; its thresholds (``MIN_ROWS32`` …) follow these costs. Each loop
runs ``--calls`` times over one run of ``--pairs`` (tap, channel) pairs, compiled as the kernel
compiles them (SLP vectorizer, 512-bit vectors): ``hot`` reuses one block of weights (in
cache), ``streaming`` reads fresh weights every call, as a decoding step does. The reference
is the 1-row loop, timed in the same process.
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from bench._common import machine, print_table
from codec_lab.plugins.coders.common import wavefront_kernel as kernel
from codec_lab.plugins.coders.common.wavefront_pool import _vectorizing

WEIGHTS = 24_000_000  # floats (96 MB): more than the last-level cache of most CPUs


def _timer(loop):  # type: ignore[no-untyped-def]
    @numba.njit(nogil=True, fastmath=kernel.FASTMATH)
    def calls(n, x, w, runs, toff, acc, stride, cs):  # type: ignore[no-untyped-def]
        kernel.wide_vectors()
        for i in range(n):
            loop(x, 0, cs, toff, w, (i * stride) % (WEIGHTS - stride), 0, runs, 0, acc)

    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3000, help="(tap, channel) pairs per call")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--stride", type=int, default=51,
                    help="floats between two input channels (the kernel: rows + padding)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random(args.pairs * args.stride + 64, dtype=np.float32)
    w = rng.random(WEIGHTS, dtype=np.float32)
    runs = np.array([1, 0, 0, args.pairs], np.int64)
    toff = np.zeros(1, np.int64)
    loops = {1: kernel.row1, 4: kernel.rows4, 16: kernel.rows16, 32: kernel.rows32}
    print(machine())
    rows: list[list[object]] = []
    base: dict[str, float] = {}
    with _vectorizing(True):
        timers = {n: _timer(f) for n, f in loops.items()}
        accs = {n: np.zeros((8, n), np.float32) for n in loops}
        for n, t in timers.items():
            t(1, x, w, runs, toff, accs[n], 0, args.stride)  # compile
    for n, t in timers.items():
        cells = []
        for label, stride in (("hot", 0), ("streaming", args.pairs * 8 + 64)):
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                t(args.calls, x, w, runs, toff, accs[n], stride, args.stride)
                best = min(best, (time.perf_counter() - t0) / args.calls / args.pairs * 1e9)
            base.setdefault(label, best)
            cells += [f"{best:.2f}", f"{best / n:.3f}", f"{n * base[label] / best:.1f}×"]
        rows.append([n, *cells])
    print_table(
        "Inner loops of the wavefront kernel: ns per (tap, channel) pair, one thread",
        ["rows", "hot ns", "hot ns/row", "rows/time vs 1 row", "streaming ns", "streaming ns/row",
         "rows/time vs 1 row"],  # fmt: skip
        rows,
    )


if __name__ == "__main__":
    main()
