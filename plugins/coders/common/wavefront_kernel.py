"""The compiled kernel of :class:`~codec_lab.plugins.coders.common.wavefront.Wavefront`: one
decoding step of a trimmed context network, every layer, in numba.

Arithmetic: one compiled kernel (numba, :func:`step_kernel`) computes a whole step, every layer,
only at the step's cells that lie in the image, and for each (block, tap) only over the
input channels its trimmed mask keeps: about half of a full convolution's products (a
batched matrix product per kernel row would multiply every masked zero and every cell of
the step's bounding parallelogram: 3.2× the products, in small, inefficient products).

Vectors run across rows: the buffers are stored (diagonal, channel, row), so a block's
consecutive rows of one input channel are consecutive floats. A block's rows of a step go in
calls of 32, 16, 4 or 1 rows (:func:`rows32` …, whichever costs least for the rows left: see
:data:`MIN_ROWS32`); a call may run up to :data:`SPARE_ROWS` rows past the last valid one,
whose results are dropped. Each adds ``x[row i, tap, c] · w[tap, c, o]`` to ``acc[o, i]``
over the runs of (tap, channel) that ``runs[rb:]`` lists (count, then tap, first channel,
length per run; row i's input at ``x[xo + toff[tap] + c·cs + i]``, its weight at
``w[wo + tap·wseg + c·8 + o]``), 8 outputs in registers (``a3``: output 0 at row 3, ``b3``
output 1, …), one 16-lane FMA per output, input channel and 16 rows with the weight
broadcast, prefetching the weights a step streams from memory. LLVM's SLP vectorizer packs
the accumulators into vectors; :func:`wide_vectors` lifts numba's preference for 256-bit
vectors on AVX-512 CPUs. Per (tap, channel) pair on one core of this project's CPU machine
(``python -m bench.wavefront_loops``, weights streaming): 1 row 2.6–2.8 ns (one FMA chain per
output), 4 rows 2.8–3.2, 16 rows 3.0–3.2, 32 rows 4.8–5.0 (each weight broadcast once for two
vectors of rows). The loops are written out, and every compiled function lives in this one
file, because numba caches by source file: a cached caller is not recompiled when a callee
in another file changes (a split would let a stale kernel compute other bits).

Every output is its bias plus its taps in a fixed order (kernel row, kernel column, input
channel), each a fused multiply-add, whichever loop computes it, in whichever lane, however
the step's cells were grouped. :func:`step_kernel_threads` deals a step's blocks to numba's
threads, layer by layer: each output is still computed whole by one thread, by the same
code, so the thread count changes nothing in the results. The kernels are compiled on first
use and kept in numba's cache (about 20 s once, most of it the 32-row loop, and 4 s more for
the threaded one; then about 0.4 s to load per process); threads and compilation:
:mod:`~codec_lab.plugins.coders.common.wavefront_pool`.

FMA contraction (``fastmath={"contract"}``) makes each multiply-add one rounding on CPUs with
FMA; a CPU without FMA would compute other last bits, so files are exact between machines that
both have it (x86-64 with FMA3: Intel since 2013, AMD since 2012, not some low-power Atom,
Celeron and Pentium parts; every 64-bit ARM).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

__all__ = ["MIN_ROWS4", "MIN_ROWS16", "MIN_ROWS32", "OUT", "SPARE_ROWS", "step_kernel", "step_kernel_threads"]

_U = np.uint64  # unsigned indices: numba wraps negative signed ones, which costs a select per load
FASTMATH = {"contract"}  # a·b + c as one FMA; nothing is reordered
OUT = 8  # outputs per call (a layer's outputs are padded to a multiple)
PREFETCH = 1024  # weights fetched this far ahead (floats: 4 KB, 128 (tap, channel) pairs)
LANES = 32  # rows of the widest call
# Rows left from which a block takes the 32-, 16- and 4-row calls (else one row): where each
# costs less than the narrower calls it replaces (per (tap, channel) pair, measured: 32 rows
# ~4.9 ns against ~6 for 16 + 4; 16 rows ~3.1 against ~5.5 for 4 + 1; 4 rows ~3.0 against
# ~2.7 per row).
MIN_ROWS32, MIN_ROWS16, MIN_ROWS4 = 17, 5, 2
SPARE_ROWS = 15  # how far a call may run past the last valid row (32 rows for 17 left)


@intrinsic
def wide_vectors(typingctx):  # type: ignore[no-untyped-def]
    """Mark the calling function ``"prefer-vector-width"="512"``: LLVM's vectorizers then use
    16-float vectors where the CPU has AVX-512 (its tuning prefers 256 bits on Intel's
    AVX-512 CPUs; elsewhere the attribute changes nothing). llvmlite's attribute set takes
    known flag names only, hence ``set.add``; should that ever fail, the kernel is merely
    slower: the lanes compute the same FMAs at any width."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        try:
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        except TypeError:  # not a set any more: 256-bit vectors, same results
            pass
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def prefetch(typingctx, arr, idx):  # type: ignore[no-untyped-def]
    """Hint the CPU to fetch ``arr[idx]``'s cache line (no fault past the end)."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.none(arr, idx), codegen


@numba.njit(cache=True, fastmath=FASTMATH, nogil=True)
def rows32(x, xo, cs, toff, w, wo, wseg, runs, rb, acc):  # compiled
    """32 rows × 8 outputs (see the module): two vectors of 16 rows per output share each
    weight, which streams from memory once for both (a step reads every active block's
    weights, up to ~30 MB); prefetched :data:`PREFETCH` floats ahead."""
    wide_vectors()
    a0, a1, a2, a3 = acc[0, 0], acc[0, 1], acc[0, 2], acc[0, 3]
    a4, a5, a6, a7 = acc[0, 4], acc[0, 5], acc[0, 6], acc[0, 7]
    a8, a9, a10, a11 = acc[0, 8], acc[0, 9], acc[0, 10], acc[0, 11]
    a12, a13, a14, a15 = acc[0, 12], acc[0, 13], acc[0, 14], acc[0, 15]
    a16, a17, a18, a19 = acc[0, 16], acc[0, 17], acc[0, 18], acc[0, 19]
    a20, a21, a22, a23 = acc[0, 20], acc[0, 21], acc[0, 22], acc[0, 23]
    a24, a25, a26, a27 = acc[0, 24], acc[0, 25], acc[0, 26], acc[0, 27]
    a28, a29, a30, a31 = acc[0, 28], acc[0, 29], acc[0, 30], acc[0, 31]
    b0, b1, b2, b3 = acc[1, 0], acc[1, 1], acc[1, 2], acc[1, 3]
    b4, b5, b6, b7 = acc[1, 4], acc[1, 5], acc[1, 6], acc[1, 7]
    b8, b9, b10, b11 = acc[1, 8], acc[1, 9], acc[1, 10], acc[1, 11]
    b12, b13, b14, b15 = acc[1, 12], acc[1, 13], acc[1, 14], acc[1, 15]
    b16, b17, b18, b19 = acc[1, 16], acc[1, 17], acc[1, 18], acc[1, 19]
    b20, b21, b22, b23 = acc[1, 20], acc[1, 21], acc[1, 22], acc[1, 23]
    b24, b25, b26, b27 = acc[1, 24], acc[1, 25], acc[1, 26], acc[1, 27]
    b28, b29, b30, b31 = acc[1, 28], acc[1, 29], acc[1, 30], acc[1, 31]
    c0, c1, c2, c3 = acc[2, 0], acc[2, 1], acc[2, 2], acc[2, 3]
    c4, c5, c6, c7 = acc[2, 4], acc[2, 5], acc[2, 6], acc[2, 7]
    c8, c9, c10, c11 = acc[2, 8], acc[2, 9], acc[2, 10], acc[2, 11]
    c12, c13, c14, c15 = acc[2, 12], acc[2, 13], acc[2, 14], acc[2, 15]
    c16, c17, c18, c19 = acc[2, 16], acc[2, 17], acc[2, 18], acc[2, 19]
    c20, c21, c22, c23 = acc[2, 20], acc[2, 21], acc[2, 22], acc[2, 23]
    c24, c25, c26, c27 = acc[2, 24], acc[2, 25], acc[2, 26], acc[2, 27]
    c28, c29, c30, c31 = acc[2, 28], acc[2, 29], acc[2, 30], acc[2, 31]
    d0, d1, d2, d3 = acc[3, 0], acc[3, 1], acc[3, 2], acc[3, 3]
    d4, d5, d6, d7 = acc[3, 4], acc[3, 5], acc[3, 6], acc[3, 7]
    d8, d9, d10, d11 = acc[3, 8], acc[3, 9], acc[3, 10], acc[3, 11]
    d12, d13, d14, d15 = acc[3, 12], acc[3, 13], acc[3, 14], acc[3, 15]
    d16, d17, d18, d19 = acc[3, 16], acc[3, 17], acc[3, 18], acc[3, 19]
    d20, d21, d22, d23 = acc[3, 20], acc[3, 21], acc[3, 22], acc[3, 23]
    d24, d25, d26, d27 = acc[3, 24], acc[3, 25], acc[3, 26], acc[3, 27]
    d28, d29, d30, d31 = acc[3, 28], acc[3, 29], acc[3, 30], acc[3, 31]
    e0, e1, e2, e3 = acc[4, 0], acc[4, 1], acc[4, 2], acc[4, 3]
    e4, e5, e6, e7 = acc[4, 4], acc[4, 5], acc[4, 6], acc[4, 7]
    e8, e9, e10, e11 = acc[4, 8], acc[4, 9], acc[4, 10], acc[4, 11]
    e12, e13, e14, e15 = acc[4, 12], acc[4, 13], acc[4, 14], acc[4, 15]
    e16, e17, e18, e19 = acc[4, 16], acc[4, 17], acc[4, 18], acc[4, 19]
    e20, e21, e22, e23 = acc[4, 20], acc[4, 21], acc[4, 22], acc[4, 23]
    e24, e25, e26, e27 = acc[4, 24], acc[4, 25], acc[4, 26], acc[4, 27]
    e28, e29, e30, e31 = acc[4, 28], acc[4, 29], acc[4, 30], acc[4, 31]
    f0, f1, f2, f3 = acc[5, 0], acc[5, 1], acc[5, 2], acc[5, 3]
    f4, f5, f6, f7 = acc[5, 4], acc[5, 5], acc[5, 6], acc[5, 7]
    f8, f9, f10, f11 = acc[5, 8], acc[5, 9], acc[5, 10], acc[5, 11]
    f12, f13, f14, f15 = acc[5, 12], acc[5, 13], acc[5, 14], acc[5, 15]
    f16, f17, f18, f19 = acc[5, 16], acc[5, 17], acc[5, 18], acc[5, 19]
    f20, f21, f22, f23 = acc[5, 20], acc[5, 21], acc[5, 22], acc[5, 23]
    f24, f25, f26, f27 = acc[5, 24], acc[5, 25], acc[5, 26], acc[5, 27]
    f28, f29, f30, f31 = acc[5, 28], acc[5, 29], acc[5, 30], acc[5, 31]
    g0, g1, g2, g3 = acc[6, 0], acc[6, 1], acc[6, 2], acc[6, 3]
    g4, g5, g6, g7 = acc[6, 4], acc[6, 5], acc[6, 6], acc[6, 7]
    g8, g9, g10, g11 = acc[6, 8], acc[6, 9], acc[6, 10], acc[6, 11]
    g12, g13, g14, g15 = acc[6, 12], acc[6, 13], acc[6, 14], acc[6, 15]
    g16, g17, g18, g19 = acc[6, 16], acc[6, 17], acc[6, 18], acc[6, 19]
    g20, g21, g22, g23 = acc[6, 20], acc[6, 21], acc[6, 22], acc[6, 23]
    g24, g25, g26, g27 = acc[6, 24], acc[6, 25], acc[6, 26], acc[6, 27]
    g28, g29, g30, g31 = acc[6, 28], acc[6, 29], acc[6, 30], acc[6, 31]
    h0, h1, h2, h3 = acc[7, 0], acc[7, 1], acc[7, 2], acc[7, 3]
    h4, h5, h6, h7 = acc[7, 4], acc[7, 5], acc[7, 6], acc[7, 7]
    h8, h9, h10, h11 = acc[7, 8], acc[7, 9], acc[7, 10], acc[7, 11]
    h12, h13, h14, h15 = acc[7, 12], acc[7, 13], acc[7, 14], acc[7, 15]
    h16, h17, h18, h19 = acc[7, 16], acc[7, 17], acc[7, 18], acc[7, 19]
    h20, h21, h22, h23 = acc[7, 20], acc[7, 21], acc[7, 22], acc[7, 23]
    h24, h25, h26, h27 = acc[7, 24], acc[7, 25], acc[7, 26], acc[7, 27]
    h28, h29, h30, h31 = acc[7, 28], acc[7, 29], acc[7, 30], acc[7, 31]
    eight, step = _U(OUT), _U(cs)
    for j in range(runs[rb]):
        s, lo, n = runs[rb + 1 + 3 * j], runs[rb + 2 + 3 * j], runs[rb + 3 + 3 * j]
        xb = _U(xo + toff[s] + lo * cs)
        q = _U(wo + s * wseg + lo * OUT)
        for _ in range(_U(n)):
            w0, w1, w2, w3 = w[q], w[q + _U(1)], w[q + _U(2)], w[q + _U(3)]
            w4, w5, w6, w7 = w[q + _U(4)], w[q + _U(5)], w[q + _U(6)], w[q + _U(7)]
            v0, v1, v2, v3 = x[xb], x[xb + _U(1)], x[xb + _U(2)], x[xb + _U(3)]
            v4, v5, v6, v7 = x[xb + _U(4)], x[xb + _U(5)], x[xb + _U(6)], x[xb + _U(7)]
            v8, v9, v10, v11 = x[xb + _U(8)], x[xb + _U(9)], x[xb + _U(10)], x[xb + _U(11)]
            v12, v13, v14, v15 = x[xb + _U(12)], x[xb + _U(13)], x[xb + _U(14)], x[xb + _U(15)]
            v16, v17, v18, v19 = x[xb + _U(16)], x[xb + _U(17)], x[xb + _U(18)], x[xb + _U(19)]
            v20, v21, v22, v23 = x[xb + _U(20)], x[xb + _U(21)], x[xb + _U(22)], x[xb + _U(23)]
            v24, v25, v26, v27 = x[xb + _U(24)], x[xb + _U(25)], x[xb + _U(26)], x[xb + _U(27)]
            v28, v29, v30, v31 = x[xb + _U(28)], x[xb + _U(29)], x[xb + _U(30)], x[xb + _U(31)]
            prefetch(w, q + _U(PREFETCH))
            q += eight
            xb += step
            a0, a1, a2, a3 = a0 + v0 * w0, a1 + v1 * w0, a2 + v2 * w0, a3 + v3 * w0
            a4, a5, a6, a7 = a4 + v4 * w0, a5 + v5 * w0, a6 + v6 * w0, a7 + v7 * w0
            a8, a9, a10, a11 = a8 + v8 * w0, a9 + v9 * w0, a10 + v10 * w0, a11 + v11 * w0
            a12, a13, a14, a15 = a12 + v12 * w0, a13 + v13 * w0, a14 + v14 * w0, a15 + v15 * w0
            a16, a17, a18, a19 = a16 + v16 * w0, a17 + v17 * w0, a18 + v18 * w0, a19 + v19 * w0
            a20, a21, a22, a23 = a20 + v20 * w0, a21 + v21 * w0, a22 + v22 * w0, a23 + v23 * w0
            a24, a25, a26, a27 = a24 + v24 * w0, a25 + v25 * w0, a26 + v26 * w0, a27 + v27 * w0
            a28, a29, a30, a31 = a28 + v28 * w0, a29 + v29 * w0, a30 + v30 * w0, a31 + v31 * w0
            b0, b1, b2, b3 = b0 + v0 * w1, b1 + v1 * w1, b2 + v2 * w1, b3 + v3 * w1
            b4, b5, b6, b7 = b4 + v4 * w1, b5 + v5 * w1, b6 + v6 * w1, b7 + v7 * w1
            b8, b9, b10, b11 = b8 + v8 * w1, b9 + v9 * w1, b10 + v10 * w1, b11 + v11 * w1
            b12, b13, b14, b15 = b12 + v12 * w1, b13 + v13 * w1, b14 + v14 * w1, b15 + v15 * w1
            b16, b17, b18, b19 = b16 + v16 * w1, b17 + v17 * w1, b18 + v18 * w1, b19 + v19 * w1
            b20, b21, b22, b23 = b20 + v20 * w1, b21 + v21 * w1, b22 + v22 * w1, b23 + v23 * w1
            b24, b25, b26, b27 = b24 + v24 * w1, b25 + v25 * w1, b26 + v26 * w1, b27 + v27 * w1
            b28, b29, b30, b31 = b28 + v28 * w1, b29 + v29 * w1, b30 + v30 * w1, b31 + v31 * w1
            c0, c1, c2, c3 = c0 + v0 * w2, c1 + v1 * w2, c2 + v2 * w2, c3 + v3 * w2
            c4, c5, c6, c7 = c4 + v4 * w2, c5 + v5 * w2, c6 + v6 * w2, c7 + v7 * w2
            c8, c9, c10, c11 = c8 + v8 * w2, c9 + v9 * w2, c10 + v10 * w2, c11 + v11 * w2
            c12, c13, c14, c15 = c12 + v12 * w2, c13 + v13 * w2, c14 + v14 * w2, c15 + v15 * w2
            c16, c17, c18, c19 = c16 + v16 * w2, c17 + v17 * w2, c18 + v18 * w2, c19 + v19 * w2
            c20, c21, c22, c23 = c20 + v20 * w2, c21 + v21 * w2, c22 + v22 * w2, c23 + v23 * w2
            c24, c25, c26, c27 = c24 + v24 * w2, c25 + v25 * w2, c26 + v26 * w2, c27 + v27 * w2
            c28, c29, c30, c31 = c28 + v28 * w2, c29 + v29 * w2, c30 + v30 * w2, c31 + v31 * w2
            d0, d1, d2, d3 = d0 + v0 * w3, d1 + v1 * w3, d2 + v2 * w3, d3 + v3 * w3
            d4, d5, d6, d7 = d4 + v4 * w3, d5 + v5 * w3, d6 + v6 * w3, d7 + v7 * w3
            d8, d9, d10, d11 = d8 + v8 * w3, d9 + v9 * w3, d10 + v10 * w3, d11 + v11 * w3
            d12, d13, d14, d15 = d12 + v12 * w3, d13 + v13 * w3, d14 + v14 * w3, d15 + v15 * w3
            d16, d17, d18, d19 = d16 + v16 * w3, d17 + v17 * w3, d18 + v18 * w3, d19 + v19 * w3
            d20, d21, d22, d23 = d20 + v20 * w3, d21 + v21 * w3, d22 + v22 * w3, d23 + v23 * w3
            d24, d25, d26, d27 = d24 + v24 * w3, d25 + v25 * w3, d26 + v26 * w3, d27 + v27 * w3
            d28, d29, d30, d31 = d28 + v28 * w3, d29 + v29 * w3, d30 + v30 * w3, d31 + v31 * w3
            e0, e1, e2, e3 = e0 + v0 * w4, e1 + v1 * w4, e2 + v2 * w4, e3 + v3 * w4
            e4, e5, e6, e7 = e4 + v4 * w4, e5 + v5 * w4, e6 + v6 * w4, e7 + v7 * w4
            e8, e9, e10, e11 = e8 + v8 * w4, e9 + v9 * w4, e10 + v10 * w4, e11 + v11 * w4
            e12, e13, e14, e15 = e12 + v12 * w4, e13 + v13 * w4, e14 + v14 * w4, e15 + v15 * w4
            e16, e17, e18, e19 = e16 + v16 * w4, e17 + v17 * w4, e18 + v18 * w4, e19 + v19 * w4
            e20, e21, e22, e23 = e20 + v20 * w4, e21 + v21 * w4, e22 + v22 * w4, e23 + v23 * w4
            e24, e25, e26, e27 = e24 + v24 * w4, e25 + v25 * w4, e26 + v26 * w4, e27 + v27 * w4
            e28, e29, e30, e31 = e28 + v28 * w4, e29 + v29 * w4, e30 + v30 * w4, e31 + v31 * w4
            f0, f1, f2, f3 = f0 + v0 * w5, f1 + v1 * w5, f2 + v2 * w5, f3 + v3 * w5
            f4, f5, f6, f7 = f4 + v4 * w5, f5 + v5 * w5, f6 + v6 * w5, f7 + v7 * w5
            f8, f9, f10, f11 = f8 + v8 * w5, f9 + v9 * w5, f10 + v10 * w5, f11 + v11 * w5
            f12, f13, f14, f15 = f12 + v12 * w5, f13 + v13 * w5, f14 + v14 * w5, f15 + v15 * w5
            f16, f17, f18, f19 = f16 + v16 * w5, f17 + v17 * w5, f18 + v18 * w5, f19 + v19 * w5
            f20, f21, f22, f23 = f20 + v20 * w5, f21 + v21 * w5, f22 + v22 * w5, f23 + v23 * w5
            f24, f25, f26, f27 = f24 + v24 * w5, f25 + v25 * w5, f26 + v26 * w5, f27 + v27 * w5
            f28, f29, f30, f31 = f28 + v28 * w5, f29 + v29 * w5, f30 + v30 * w5, f31 + v31 * w5
            g0, g1, g2, g3 = g0 + v0 * w6, g1 + v1 * w6, g2 + v2 * w6, g3 + v3 * w6
            g4, g5, g6, g7 = g4 + v4 * w6, g5 + v5 * w6, g6 + v6 * w6, g7 + v7 * w6
            g8, g9, g10, g11 = g8 + v8 * w6, g9 + v9 * w6, g10 + v10 * w6, g11 + v11 * w6
            g12, g13, g14, g15 = g12 + v12 * w6, g13 + v13 * w6, g14 + v14 * w6, g15 + v15 * w6
            g16, g17, g18, g19 = g16 + v16 * w6, g17 + v17 * w6, g18 + v18 * w6, g19 + v19 * w6
            g20, g21, g22, g23 = g20 + v20 * w6, g21 + v21 * w6, g22 + v22 * w6, g23 + v23 * w6
            g24, g25, g26, g27 = g24 + v24 * w6, g25 + v25 * w6, g26 + v26 * w6, g27 + v27 * w6
            g28, g29, g30, g31 = g28 + v28 * w6, g29 + v29 * w6, g30 + v30 * w6, g31 + v31 * w6
            h0, h1, h2, h3 = h0 + v0 * w7, h1 + v1 * w7, h2 + v2 * w7, h3 + v3 * w7
            h4, h5, h6, h7 = h4 + v4 * w7, h5 + v5 * w7, h6 + v6 * w7, h7 + v7 * w7
            h8, h9, h10, h11 = h8 + v8 * w7, h9 + v9 * w7, h10 + v10 * w7, h11 + v11 * w7
            h12, h13, h14, h15 = h12 + v12 * w7, h13 + v13 * w7, h14 + v14 * w7, h15 + v15 * w7
            h16, h17, h18, h19 = h16 + v16 * w7, h17 + v17 * w7, h18 + v18 * w7, h19 + v19 * w7
            h20, h21, h22, h23 = h20 + v20 * w7, h21 + v21 * w7, h22 + v22 * w7, h23 + v23 * w7
            h24, h25, h26, h27 = h24 + v24 * w7, h25 + v25 * w7, h26 + v26 * w7, h27 + v27 * w7
            h28, h29, h30, h31 = h28 + v28 * w7, h29 + v29 * w7, h30 + v30 * w7, h31 + v31 * w7
    acc[0, 0], acc[0, 1], acc[0, 2], acc[0, 3] = a0, a1, a2, a3
    acc[0, 4], acc[0, 5], acc[0, 6], acc[0, 7] = a4, a5, a6, a7
    acc[0, 8], acc[0, 9], acc[0, 10], acc[0, 11] = a8, a9, a10, a11
    acc[0, 12], acc[0, 13], acc[0, 14], acc[0, 15] = a12, a13, a14, a15
    acc[0, 16], acc[0, 17], acc[0, 18], acc[0, 19] = a16, a17, a18, a19
    acc[0, 20], acc[0, 21], acc[0, 22], acc[0, 23] = a20, a21, a22, a23
    acc[0, 24], acc[0, 25], acc[0, 26], acc[0, 27] = a24, a25, a26, a27
    acc[0, 28], acc[0, 29], acc[0, 30], acc[0, 31] = a28, a29, a30, a31
    acc[1, 0], acc[1, 1], acc[1, 2], acc[1, 3] = b0, b1, b2, b3
    acc[1, 4], acc[1, 5], acc[1, 6], acc[1, 7] = b4, b5, b6, b7
    acc[1, 8], acc[1, 9], acc[1, 10], acc[1, 11] = b8, b9, b10, b11
    acc[1, 12], acc[1, 13], acc[1, 14], acc[1, 15] = b12, b13, b14, b15
    acc[1, 16], acc[1, 17], acc[1, 18], acc[1, 19] = b16, b17, b18, b19
    acc[1, 20], acc[1, 21], acc[1, 22], acc[1, 23] = b20, b21, b22, b23
    acc[1, 24], acc[1, 25], acc[1, 26], acc[1, 27] = b24, b25, b26, b27
    acc[1, 28], acc[1, 29], acc[1, 30], acc[1, 31] = b28, b29, b30, b31
    acc[2, 0], acc[2, 1], acc[2, 2], acc[2, 3] = c0, c1, c2, c3
    acc[2, 4], acc[2, 5], acc[2, 6], acc[2, 7] = c4, c5, c6, c7
    acc[2, 8], acc[2, 9], acc[2, 10], acc[2, 11] = c8, c9, c10, c11
    acc[2, 12], acc[2, 13], acc[2, 14], acc[2, 15] = c12, c13, c14, c15
    acc[2, 16], acc[2, 17], acc[2, 18], acc[2, 19] = c16, c17, c18, c19
    acc[2, 20], acc[2, 21], acc[2, 22], acc[2, 23] = c20, c21, c22, c23
    acc[2, 24], acc[2, 25], acc[2, 26], acc[2, 27] = c24, c25, c26, c27
    acc[2, 28], acc[2, 29], acc[2, 30], acc[2, 31] = c28, c29, c30, c31
    acc[3, 0], acc[3, 1], acc[3, 2], acc[3, 3] = d0, d1, d2, d3
    acc[3, 4], acc[3, 5], acc[3, 6], acc[3, 7] = d4, d5, d6, d7
    acc[3, 8], acc[3, 9], acc[3, 10], acc[3, 11] = d8, d9, d10, d11
    acc[3, 12], acc[3, 13], acc[3, 14], acc[3, 15] = d12, d13, d14, d15
    acc[3, 16], acc[3, 17], acc[3, 18], acc[3, 19] = d16, d17, d18, d19
    acc[3, 20], acc[3, 21], acc[3, 22], acc[3, 23] = d20, d21, d22, d23
    acc[3, 24], acc[3, 25], acc[3, 26], acc[3, 27] = d24, d25, d26, d27
    acc[3, 28], acc[3, 29], acc[3, 30], acc[3, 31] = d28, d29, d30, d31
    acc[4, 0], acc[4, 1], acc[4, 2], acc[4, 3] = e0, e1, e2, e3
    acc[4, 4], acc[4, 5], acc[4, 6], acc[4, 7] = e4, e5, e6, e7
    acc[4, 8], acc[4, 9], acc[4, 10], acc[4, 11] = e8, e9, e10, e11
    acc[4, 12], acc[4, 13], acc[4, 14], acc[4, 15] = e12, e13, e14, e15
    acc[4, 16], acc[4, 17], acc[4, 18], acc[4, 19] = e16, e17, e18, e19
    acc[4, 20], acc[4, 21], acc[4, 22], acc[4, 23] = e20, e21, e22, e23
    acc[4, 24], acc[4, 25], acc[4, 26], acc[4, 27] = e24, e25, e26, e27
    acc[4, 28], acc[4, 29], acc[4, 30], acc[4, 31] = e28, e29, e30, e31
    acc[5, 0], acc[5, 1], acc[5, 2], acc[5, 3] = f0, f1, f2, f3
    acc[5, 4], acc[5, 5], acc[5, 6], acc[5, 7] = f4, f5, f6, f7
    acc[5, 8], acc[5, 9], acc[5, 10], acc[5, 11] = f8, f9, f10, f11
    acc[5, 12], acc[5, 13], acc[5, 14], acc[5, 15] = f12, f13, f14, f15
    acc[5, 16], acc[5, 17], acc[5, 18], acc[5, 19] = f16, f17, f18, f19
    acc[5, 20], acc[5, 21], acc[5, 22], acc[5, 23] = f20, f21, f22, f23
    acc[5, 24], acc[5, 25], acc[5, 26], acc[5, 27] = f24, f25, f26, f27
    acc[5, 28], acc[5, 29], acc[5, 30], acc[5, 31] = f28, f29, f30, f31
    acc[6, 0], acc[6, 1], acc[6, 2], acc[6, 3] = g0, g1, g2, g3
    acc[6, 4], acc[6, 5], acc[6, 6], acc[6, 7] = g4, g5, g6, g7
    acc[6, 8], acc[6, 9], acc[6, 10], acc[6, 11] = g8, g9, g10, g11
    acc[6, 12], acc[6, 13], acc[6, 14], acc[6, 15] = g12, g13, g14, g15
    acc[6, 16], acc[6, 17], acc[6, 18], acc[6, 19] = g16, g17, g18, g19
    acc[6, 20], acc[6, 21], acc[6, 22], acc[6, 23] = g20, g21, g22, g23
    acc[6, 24], acc[6, 25], acc[6, 26], acc[6, 27] = g24, g25, g26, g27
    acc[6, 28], acc[6, 29], acc[6, 30], acc[6, 31] = g28, g29, g30, g31
    acc[7, 0], acc[7, 1], acc[7, 2], acc[7, 3] = h0, h1, h2, h3
    acc[7, 4], acc[7, 5], acc[7, 6], acc[7, 7] = h4, h5, h6, h7
    acc[7, 8], acc[7, 9], acc[7, 10], acc[7, 11] = h8, h9, h10, h11
    acc[7, 12], acc[7, 13], acc[7, 14], acc[7, 15] = h12, h13, h14, h15
    acc[7, 16], acc[7, 17], acc[7, 18], acc[7, 19] = h16, h17, h18, h19
    acc[7, 20], acc[7, 21], acc[7, 22], acc[7, 23] = h20, h21, h22, h23
    acc[7, 24], acc[7, 25], acc[7, 26], acc[7, 27] = h24, h25, h26, h27
    acc[7, 28], acc[7, 29], acc[7, 30], acc[7, 31] = h28, h29, h30, h31


@numba.njit(cache=True, fastmath=FASTMATH, nogil=True)
def rows16(x, xo, cs, toff, w, wo, wseg, runs, rb, acc):  # compiled
    """16 rows × 8 outputs (see the module); the weights are prefetched :data:`PREFETCH`
    floats ahead (a step streams every active block's, up to ~30 MB)."""
    wide_vectors()
    a0, a1, a2, a3 = acc[0, 0], acc[0, 1], acc[0, 2], acc[0, 3]
    a4, a5, a6, a7 = acc[0, 4], acc[0, 5], acc[0, 6], acc[0, 7]
    a8, a9, a10, a11 = acc[0, 8], acc[0, 9], acc[0, 10], acc[0, 11]
    a12, a13, a14, a15 = acc[0, 12], acc[0, 13], acc[0, 14], acc[0, 15]
    b0, b1, b2, b3 = acc[1, 0], acc[1, 1], acc[1, 2], acc[1, 3]
    b4, b5, b6, b7 = acc[1, 4], acc[1, 5], acc[1, 6], acc[1, 7]
    b8, b9, b10, b11 = acc[1, 8], acc[1, 9], acc[1, 10], acc[1, 11]
    b12, b13, b14, b15 = acc[1, 12], acc[1, 13], acc[1, 14], acc[1, 15]
    c0, c1, c2, c3 = acc[2, 0], acc[2, 1], acc[2, 2], acc[2, 3]
    c4, c5, c6, c7 = acc[2, 4], acc[2, 5], acc[2, 6], acc[2, 7]
    c8, c9, c10, c11 = acc[2, 8], acc[2, 9], acc[2, 10], acc[2, 11]
    c12, c13, c14, c15 = acc[2, 12], acc[2, 13], acc[2, 14], acc[2, 15]
    d0, d1, d2, d3 = acc[3, 0], acc[3, 1], acc[3, 2], acc[3, 3]
    d4, d5, d6, d7 = acc[3, 4], acc[3, 5], acc[3, 6], acc[3, 7]
    d8, d9, d10, d11 = acc[3, 8], acc[3, 9], acc[3, 10], acc[3, 11]
    d12, d13, d14, d15 = acc[3, 12], acc[3, 13], acc[3, 14], acc[3, 15]
    e0, e1, e2, e3 = acc[4, 0], acc[4, 1], acc[4, 2], acc[4, 3]
    e4, e5, e6, e7 = acc[4, 4], acc[4, 5], acc[4, 6], acc[4, 7]
    e8, e9, e10, e11 = acc[4, 8], acc[4, 9], acc[4, 10], acc[4, 11]
    e12, e13, e14, e15 = acc[4, 12], acc[4, 13], acc[4, 14], acc[4, 15]
    f0, f1, f2, f3 = acc[5, 0], acc[5, 1], acc[5, 2], acc[5, 3]
    f4, f5, f6, f7 = acc[5, 4], acc[5, 5], acc[5, 6], acc[5, 7]
    f8, f9, f10, f11 = acc[5, 8], acc[5, 9], acc[5, 10], acc[5, 11]
    f12, f13, f14, f15 = acc[5, 12], acc[5, 13], acc[5, 14], acc[5, 15]
    g0, g1, g2, g3 = acc[6, 0], acc[6, 1], acc[6, 2], acc[6, 3]
    g4, g5, g6, g7 = acc[6, 4], acc[6, 5], acc[6, 6], acc[6, 7]
    g8, g9, g10, g11 = acc[6, 8], acc[6, 9], acc[6, 10], acc[6, 11]
    g12, g13, g14, g15 = acc[6, 12], acc[6, 13], acc[6, 14], acc[6, 15]
    h0, h1, h2, h3 = acc[7, 0], acc[7, 1], acc[7, 2], acc[7, 3]
    h4, h5, h6, h7 = acc[7, 4], acc[7, 5], acc[7, 6], acc[7, 7]
    h8, h9, h10, h11 = acc[7, 8], acc[7, 9], acc[7, 10], acc[7, 11]
    h12, h13, h14, h15 = acc[7, 12], acc[7, 13], acc[7, 14], acc[7, 15]
    eight, step = _U(OUT), _U(cs)
    for j in range(runs[rb]):
        s, lo, n = runs[rb + 1 + 3 * j], runs[rb + 2 + 3 * j], runs[rb + 3 + 3 * j]
        xb = _U(xo + toff[s] + lo * cs)
        q = _U(wo + s * wseg + lo * OUT)
        for _ in range(_U(n)):
            w0, w1, w2, w3 = w[q], w[q + _U(1)], w[q + _U(2)], w[q + _U(3)]
            w4, w5, w6, w7 = w[q + _U(4)], w[q + _U(5)], w[q + _U(6)], w[q + _U(7)]
            v0, v1, v2, v3 = x[xb], x[xb + _U(1)], x[xb + _U(2)], x[xb + _U(3)]
            v4, v5, v6, v7 = x[xb + _U(4)], x[xb + _U(5)], x[xb + _U(6)], x[xb + _U(7)]
            v8, v9, v10, v11 = x[xb + _U(8)], x[xb + _U(9)], x[xb + _U(10)], x[xb + _U(11)]
            v12, v13, v14, v15 = x[xb + _U(12)], x[xb + _U(13)], x[xb + _U(14)], x[xb + _U(15)]
            prefetch(w, q + _U(PREFETCH))
            q += eight
            xb += step
            a0, a1, a2, a3 = a0 + v0 * w0, a1 + v1 * w0, a2 + v2 * w0, a3 + v3 * w0
            a4, a5, a6, a7 = a4 + v4 * w0, a5 + v5 * w0, a6 + v6 * w0, a7 + v7 * w0
            a8, a9, a10, a11 = a8 + v8 * w0, a9 + v9 * w0, a10 + v10 * w0, a11 + v11 * w0
            a12, a13, a14, a15 = a12 + v12 * w0, a13 + v13 * w0, a14 + v14 * w0, a15 + v15 * w0
            b0, b1, b2, b3 = b0 + v0 * w1, b1 + v1 * w1, b2 + v2 * w1, b3 + v3 * w1
            b4, b5, b6, b7 = b4 + v4 * w1, b5 + v5 * w1, b6 + v6 * w1, b7 + v7 * w1
            b8, b9, b10, b11 = b8 + v8 * w1, b9 + v9 * w1, b10 + v10 * w1, b11 + v11 * w1
            b12, b13, b14, b15 = b12 + v12 * w1, b13 + v13 * w1, b14 + v14 * w1, b15 + v15 * w1
            c0, c1, c2, c3 = c0 + v0 * w2, c1 + v1 * w2, c2 + v2 * w2, c3 + v3 * w2
            c4, c5, c6, c7 = c4 + v4 * w2, c5 + v5 * w2, c6 + v6 * w2, c7 + v7 * w2
            c8, c9, c10, c11 = c8 + v8 * w2, c9 + v9 * w2, c10 + v10 * w2, c11 + v11 * w2
            c12, c13, c14, c15 = c12 + v12 * w2, c13 + v13 * w2, c14 + v14 * w2, c15 + v15 * w2
            d0, d1, d2, d3 = d0 + v0 * w3, d1 + v1 * w3, d2 + v2 * w3, d3 + v3 * w3
            d4, d5, d6, d7 = d4 + v4 * w3, d5 + v5 * w3, d6 + v6 * w3, d7 + v7 * w3
            d8, d9, d10, d11 = d8 + v8 * w3, d9 + v9 * w3, d10 + v10 * w3, d11 + v11 * w3
            d12, d13, d14, d15 = d12 + v12 * w3, d13 + v13 * w3, d14 + v14 * w3, d15 + v15 * w3
            e0, e1, e2, e3 = e0 + v0 * w4, e1 + v1 * w4, e2 + v2 * w4, e3 + v3 * w4
            e4, e5, e6, e7 = e4 + v4 * w4, e5 + v5 * w4, e6 + v6 * w4, e7 + v7 * w4
            e8, e9, e10, e11 = e8 + v8 * w4, e9 + v9 * w4, e10 + v10 * w4, e11 + v11 * w4
            e12, e13, e14, e15 = e12 + v12 * w4, e13 + v13 * w4, e14 + v14 * w4, e15 + v15 * w4
            f0, f1, f2, f3 = f0 + v0 * w5, f1 + v1 * w5, f2 + v2 * w5, f3 + v3 * w5
            f4, f5, f6, f7 = f4 + v4 * w5, f5 + v5 * w5, f6 + v6 * w5, f7 + v7 * w5
            f8, f9, f10, f11 = f8 + v8 * w5, f9 + v9 * w5, f10 + v10 * w5, f11 + v11 * w5
            f12, f13, f14, f15 = f12 + v12 * w5, f13 + v13 * w5, f14 + v14 * w5, f15 + v15 * w5
            g0, g1, g2, g3 = g0 + v0 * w6, g1 + v1 * w6, g2 + v2 * w6, g3 + v3 * w6
            g4, g5, g6, g7 = g4 + v4 * w6, g5 + v5 * w6, g6 + v6 * w6, g7 + v7 * w6
            g8, g9, g10, g11 = g8 + v8 * w6, g9 + v9 * w6, g10 + v10 * w6, g11 + v11 * w6
            g12, g13, g14, g15 = g12 + v12 * w6, g13 + v13 * w6, g14 + v14 * w6, g15 + v15 * w6
            h0, h1, h2, h3 = h0 + v0 * w7, h1 + v1 * w7, h2 + v2 * w7, h3 + v3 * w7
            h4, h5, h6, h7 = h4 + v4 * w7, h5 + v5 * w7, h6 + v6 * w7, h7 + v7 * w7
            h8, h9, h10, h11 = h8 + v8 * w7, h9 + v9 * w7, h10 + v10 * w7, h11 + v11 * w7
            h12, h13, h14, h15 = h12 + v12 * w7, h13 + v13 * w7, h14 + v14 * w7, h15 + v15 * w7
    acc[0, 0], acc[0, 1], acc[0, 2], acc[0, 3] = a0, a1, a2, a3
    acc[0, 4], acc[0, 5], acc[0, 6], acc[0, 7] = a4, a5, a6, a7
    acc[0, 8], acc[0, 9], acc[0, 10], acc[0, 11] = a8, a9, a10, a11
    acc[0, 12], acc[0, 13], acc[0, 14], acc[0, 15] = a12, a13, a14, a15
    acc[1, 0], acc[1, 1], acc[1, 2], acc[1, 3] = b0, b1, b2, b3
    acc[1, 4], acc[1, 5], acc[1, 6], acc[1, 7] = b4, b5, b6, b7
    acc[1, 8], acc[1, 9], acc[1, 10], acc[1, 11] = b8, b9, b10, b11
    acc[1, 12], acc[1, 13], acc[1, 14], acc[1, 15] = b12, b13, b14, b15
    acc[2, 0], acc[2, 1], acc[2, 2], acc[2, 3] = c0, c1, c2, c3
    acc[2, 4], acc[2, 5], acc[2, 6], acc[2, 7] = c4, c5, c6, c7
    acc[2, 8], acc[2, 9], acc[2, 10], acc[2, 11] = c8, c9, c10, c11
    acc[2, 12], acc[2, 13], acc[2, 14], acc[2, 15] = c12, c13, c14, c15
    acc[3, 0], acc[3, 1], acc[3, 2], acc[3, 3] = d0, d1, d2, d3
    acc[3, 4], acc[3, 5], acc[3, 6], acc[3, 7] = d4, d5, d6, d7
    acc[3, 8], acc[3, 9], acc[3, 10], acc[3, 11] = d8, d9, d10, d11
    acc[3, 12], acc[3, 13], acc[3, 14], acc[3, 15] = d12, d13, d14, d15
    acc[4, 0], acc[4, 1], acc[4, 2], acc[4, 3] = e0, e1, e2, e3
    acc[4, 4], acc[4, 5], acc[4, 6], acc[4, 7] = e4, e5, e6, e7
    acc[4, 8], acc[4, 9], acc[4, 10], acc[4, 11] = e8, e9, e10, e11
    acc[4, 12], acc[4, 13], acc[4, 14], acc[4, 15] = e12, e13, e14, e15
    acc[5, 0], acc[5, 1], acc[5, 2], acc[5, 3] = f0, f1, f2, f3
    acc[5, 4], acc[5, 5], acc[5, 6], acc[5, 7] = f4, f5, f6, f7
    acc[5, 8], acc[5, 9], acc[5, 10], acc[5, 11] = f8, f9, f10, f11
    acc[5, 12], acc[5, 13], acc[5, 14], acc[5, 15] = f12, f13, f14, f15
    acc[6, 0], acc[6, 1], acc[6, 2], acc[6, 3] = g0, g1, g2, g3
    acc[6, 4], acc[6, 5], acc[6, 6], acc[6, 7] = g4, g5, g6, g7
    acc[6, 8], acc[6, 9], acc[6, 10], acc[6, 11] = g8, g9, g10, g11
    acc[6, 12], acc[6, 13], acc[6, 14], acc[6, 15] = g12, g13, g14, g15
    acc[7, 0], acc[7, 1], acc[7, 2], acc[7, 3] = h0, h1, h2, h3
    acc[7, 4], acc[7, 5], acc[7, 6], acc[7, 7] = h4, h5, h6, h7
    acc[7, 8], acc[7, 9], acc[7, 10], acc[7, 11] = h8, h9, h10, h11
    acc[7, 12], acc[7, 13], acc[7, 14], acc[7, 15] = h12, h13, h14, h15


@numba.njit(cache=True, fastmath=FASTMATH, nogil=True)
def rows4(x, xo, cs, toff, w, wo, wseg, runs, rb, acc):  # compiled
    """4 rows × 8 outputs (see the module): four rows' FMA chains in flight at once, so four
    rows cost little more than :func:`row1`'s one, whose FMAs each wait on the last."""
    wide_vectors()
    a0, a1, a2, a3 = acc[0, 0], acc[0, 1], acc[0, 2], acc[0, 3]
    b0, b1, b2, b3 = acc[1, 0], acc[1, 1], acc[1, 2], acc[1, 3]
    c0, c1, c2, c3 = acc[2, 0], acc[2, 1], acc[2, 2], acc[2, 3]
    d0, d1, d2, d3 = acc[3, 0], acc[3, 1], acc[3, 2], acc[3, 3]
    e0, e1, e2, e3 = acc[4, 0], acc[4, 1], acc[4, 2], acc[4, 3]
    f0, f1, f2, f3 = acc[5, 0], acc[5, 1], acc[5, 2], acc[5, 3]
    g0, g1, g2, g3 = acc[6, 0], acc[6, 1], acc[6, 2], acc[6, 3]
    h0, h1, h2, h3 = acc[7, 0], acc[7, 1], acc[7, 2], acc[7, 3]
    eight, step = _U(OUT), _U(cs)
    for j in range(runs[rb]):
        s, lo, n = runs[rb + 1 + 3 * j], runs[rb + 2 + 3 * j], runs[rb + 3 + 3 * j]
        xb = _U(xo + toff[s] + lo * cs)
        q = _U(wo + s * wseg + lo * OUT)
        for _ in range(_U(n)):
            w0, w1, w2, w3 = w[q], w[q + _U(1)], w[q + _U(2)], w[q + _U(3)]
            w4, w5, w6, w7 = w[q + _U(4)], w[q + _U(5)], w[q + _U(6)], w[q + _U(7)]
            v0, v1, v2, v3 = x[xb], x[xb + _U(1)], x[xb + _U(2)], x[xb + _U(3)]
            prefetch(w, q + _U(PREFETCH))
            q += eight
            xb += step
            a0, a1, a2, a3 = a0 + v0 * w0, a1 + v1 * w0, a2 + v2 * w0, a3 + v3 * w0
            b0, b1, b2, b3 = b0 + v0 * w1, b1 + v1 * w1, b2 + v2 * w1, b3 + v3 * w1
            c0, c1, c2, c3 = c0 + v0 * w2, c1 + v1 * w2, c2 + v2 * w2, c3 + v3 * w2
            d0, d1, d2, d3 = d0 + v0 * w3, d1 + v1 * w3, d2 + v2 * w3, d3 + v3 * w3
            e0, e1, e2, e3 = e0 + v0 * w4, e1 + v1 * w4, e2 + v2 * w4, e3 + v3 * w4
            f0, f1, f2, f3 = f0 + v0 * w5, f1 + v1 * w5, f2 + v2 * w5, f3 + v3 * w5
            g0, g1, g2, g3 = g0 + v0 * w6, g1 + v1 * w6, g2 + v2 * w6, g3 + v3 * w6
            h0, h1, h2, h3 = h0 + v0 * w7, h1 + v1 * w7, h2 + v2 * w7, h3 + v3 * w7
    acc[0, 0], acc[0, 1], acc[0, 2], acc[0, 3] = a0, a1, a2, a3
    acc[1, 0], acc[1, 1], acc[1, 2], acc[1, 3] = b0, b1, b2, b3
    acc[2, 0], acc[2, 1], acc[2, 2], acc[2, 3] = c0, c1, c2, c3
    acc[3, 0], acc[3, 1], acc[3, 2], acc[3, 3] = d0, d1, d2, d3
    acc[4, 0], acc[4, 1], acc[4, 2], acc[4, 3] = e0, e1, e2, e3
    acc[5, 0], acc[5, 1], acc[5, 2], acc[5, 3] = f0, f1, f2, f3
    acc[6, 0], acc[6, 1], acc[6, 2], acc[6, 3] = g0, g1, g2, g3
    acc[7, 0], acc[7, 1], acc[7, 2], acc[7, 3] = h0, h1, h2, h3


@numba.njit(cache=True, fastmath=FASTMATH, nogil=True)
def row1(x, xo, cs, toff, w, wo, wseg, runs, rb, acc):  # compiled
    """1 row × 8 outputs (see the module; row 0 of ``acc``)."""
    wide_vectors()
    a0, a1, a2, a3 = acc[0, 0], acc[1, 0], acc[2, 0], acc[3, 0]
    a4, a5, a6, a7 = acc[4, 0], acc[5, 0], acc[6, 0], acc[7, 0]
    eight, step = _U(OUT), _U(cs)
    for j in range(runs[rb]):
        s, lo, n = runs[rb + 1 + 3 * j], runs[rb + 2 + 3 * j], runs[rb + 3 + 3 * j]
        xb = _U(xo + toff[s] + lo * cs)
        q = _U(wo + s * wseg + lo * OUT)
        for _ in range(_U(n)):
            w0, w1, w2, w3 = w[q], w[q + _U(1)], w[q + _U(2)], w[q + _U(3)]
            w4, w5, w6, w7 = w[q + _U(4)], w[q + _U(5)], w[q + _U(6)], w[q + _U(7)]
            v = x[xb]
            prefetch(w, q + _U(PREFETCH))
            q += eight
            xb += step
            a0, a1, a2, a3 = a0 + v * w0, a1 + v * w1, a2 + v * w2, a3 + v * w3
            a4, a5, a6, a7 = a4 + v * w4, a5 + v * w5, a6 + v * w6, a7 + v * w7
    acc[0, 0], acc[1, 0], acc[2, 0], acc[3, 0] = a0, a1, a2, a3
    acc[4, 0], acc[5, 0], acc[6, 0], acc[7, 0] = a4, a5, a6, a7


@numba.njit(cache=True, fastmath=FASTMATH, nogil=True)
def _layer(
    bufs, weights, runs, params, table, li, out, t_first, t_hi, t_stride, p, h_lo, h_hi, height, width, r, hp
):  # compiled
    """Layer ``li`` (a row of ``table``) at blocks ``t_first, t_first + t_stride, … ≤ t_hi`` of
    one step (see :func:`step_kernel`). Blocks of one layer are independent: each reads the
    layer below and writes its own channels."""
    wide_vectors()
    acc = np.zeros((OUT, LANES), np.float32)
    k, cin, g, nchunk = table[li, 0], table[li, 1], table[li, 2], table[li, 3]
    src, csrc, dst, cdst = table[li, 4], table[li, 5], table[li, 6], table[li, 7]
    res, cond, ccond = table[li, 8], table[li, 9], table[li, 10]
    woff, roff, boff, soff = table[li, 11], table[li, 12], table[li, 13], table[li, 14]
    rk, nseg = k // 2, k * k
    toff = np.empty(nseg, np.int64)  # tap (dh, dw) relative to tap (0, 0): diagonals and rows
    for a in range(k):
        for b in range(k):
            toff[a * k + b] = (a + b) * csrc * hp + a
    wseg = cin * OUT
    for tn in range(t_first, t_hi + 1, t_stride):
        d = p - tn
        h0, h1 = max(h_lo, d - width + 1, 0), min(h_hi, d, height - 1)
        rb = roff + tn * (1 + 3 * nseg)
        xd = src + (d + 2 * r - 2 * rk) * csrc * hp + r - rk  # tap (0, 0) of row 0
        for ch in range(nchunk):
            wo = woff + (tn * nchunk + ch) * nseg * wseg
            pb = tn * nchunk * OUT + ch * OUT
            nout = min(OUT, g - ch * OUT)
            h = h0
            while h <= h1:
                left = h1 - h + 1
                span = 32 if left >= MIN_ROWS32 else 16 if left >= MIN_ROWS16 else 4 if left >= MIN_ROWS4 else 1  # noqa: E501
                rows = min(span, left)
                for o in range(OUT):
                    bias = params[boff + pb + o]
                    for i in range(span):
                        acc[o, i] = bias
                if span == 32:
                    rows32(bufs, xd + h, hp, toff, weights, wo, wseg, runs, rb, acc)
                elif span == 16:
                    rows16(bufs, xd + h, hp, toff, weights, wo, wseg, runs, rb, acc)
                elif span == 4:
                    rows4(bufs, xd + h, hp, toff, weights, wo, wseg, runs, rb, acc)
                else:
                    row1(bufs, xd + h, hp, toff, weights, wo, wseg, runs, rb, acc)
                for o in range(nout):
                    c = tn * g + ch * OUT + o
                    slope = params[soff + pb + o] if soff >= 0 else np.float32(1)
                    at = ((d + 2 * r) * cdst + c) * hp + h + r
                    at_cond = ((d + 2 * r) * ccond + c) * hp + h + r
                    for i in range(rows):
                        v = acc[o, i]
                        if cond >= 0:
                            v += bufs[cond + at_cond + i]
                        if soff >= 0 and v < 0:
                            v *= slope
                        if dst < 0:
                            out[t_hi - tn, h + i - h_lo, ch * OUT + o] = v
                        else:
                            if res >= 0:
                                v += bufs[res + at + i]
                            bufs[dst + at + i] = v
                h += rows


@numba.njit(cache=True, fastmath=FASTMATH, nogil=True)
def step_kernel(bufs, weights, runs, params, table, out, t_lo, t_hi, p, h_lo, h_hi, height, width, r, hp):
    """Every layer (rows of ``table``) at one step's cells: blocks ``t_lo..t_hi``, block t on
    diagonal ``p - t``, rows ``h_lo..h_hi`` clipped to the image. Hidden layers write their
    activations into ``bufs`` (each buffer (diagonal, channel, ``hp`` rows), cell (h, d) at
    diagonal d + 2r, row h + r); the last writes logits into ``out[t_hi - t, h - h_lo, :]``.

    ``table`` columns: kernel, input channels, outputs per block, output chunks of 8, then
    offsets into ``bufs`` and channel counts: source, its channels, destination (-1: the
    last layer), its channels, residual (-1: none), condition (-1: none), its channels; then
    offsets of the layer's weights (block, chunk, dh, dw, channel, 8), its runs of taps and
    channels (block, 1 + 3·k²) and its bias and slope (block, chunk·8; slope -1: no PReLU)
    in ``params``.
    """
    for li in range(table.shape[0]):
        _layer(
            bufs, weights, runs, params, table, li, out, t_lo, t_hi, 1, p, h_lo, h_hi, height, width, r, hp
        )


@numba.njit(cache=True, fastmath=FASTMATH, nogil=True, parallel=True)
def step_kernel_threads(
    bufs, weights, runs, params, table, out, t_lo, t_hi, p, h_lo, h_hi, height, width, r, hp, parts
):
    """:func:`step_kernel` with each layer's blocks dealt round-robin to ``parts`` threads (numba's
    pool), which meet after every layer: each output is still computed whole by one thread, by
    the same code, so the results are those of :func:`step_kernel`, bit for bit."""
    for li in range(table.shape[0]):
        for part in numba.prange(parts):
            _layer(bufs, weights, runs, params, table, li, out, t_lo + part, t_hi, parts, p, h_lo, h_hi,
                   height, width, r, hp)  # fmt: skip
