"""The compiled kernel of :class:`~codec_lab.plugins.coders.common.wavefront.Wavefront`: one
decoding step of a trimmed context network, every layer, in numba.

Arithmetic: one compiled kernel (numba, :func:`step_kernel`) computes a whole step, every layer,
only at the step's cells that lie in the image, and for each (block, tap) only over the
input channels its trimmed mask keeps: about half of a full convolution's products (a
batched matrix product per kernel row would multiply every masked zero and every cell of
the step's bounding parallelogram: 3.2× the products, in small, inefficient products).

Vectors run across rows: the buffers are stored (diagonal, channel, row), so a block's 16
consecutive rows of one input channel are 16 consecutive floats. The inner loop
(:func:`_rows16`) keeps 16 rows × 8 outputs in registers, one 16-lane FMA per output and
input channel, the weight broadcast: half the instructions of 8 lanes across outputs, and
AVX-512 (where the CPU has it) fills its 16 lanes. Numba's LLVM tunes AVX-512 CPUs to prefer
256-bit vectors; :func:`_wide_vectors` lifts that for these functions alone. A block's last
few rows (fewer than :data:`MIN_ROWS16`) go one at a time (:func:`_row1`, lanes across the 8
outputs: one FMA chain, whose latency makes a row cost about as much as a 16-row call); a
16-row call may run up to :data:`SPARE_ROWS` rows past the last valid one, whose results are
dropped. The kernel is bound by memory more than by arithmetic: a step streams every active
block's weights (each used by at most 32 rows), which the inner loop prefetches.

Every output is its bias plus its taps in a fixed order (kernel row, kernel column, input
channel), each a fused multiply-add, whichever function computes it, in whichever lane, however
the step's cells were grouped. :func:`run_step` with ``parts`` > 1 deals a step's blocks to
numba's threads (:func:`step_kernel_threads`), layer by layer: each output is still computed
whole by one thread, by the same code, so the thread count changes nothing in the results.
The kernels are compiled on first use and kept in numba's cache (about 12 s once, then about
0.3 s to load per process).

FMA contraction (``fastmath={"contract"}``) makes each multiply-add one rounding on CPUs with
FMA; a CPU without FMA would compute other last bits, so files are exact between machines that
both have it (x86-64 with FMA3: Intel since 2013, AMD since 2012, not some low-power Atom,
Celeron and Pentium parts; every 64-bit ARM).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core import config as numba_config
from numba.core.extending import intrinsic

__all__ = [
    "MIN_ROWS16", "OUT", "SPARE_ROWS", "compile_kernel", "run_step", "step_kernel", "step_kernel_threads",
]  # fmt: skip

_U = np.uint64
_FASTMATH = {"contract"}  # a·b + c as one FMA; nothing is reordered
OUT = 8  # outputs per kernel call (a layer's outputs are padded to a multiple)
LANES = 16  # rows per vector call
MIN_ROWS16 = 5  # rows left from which a block takes a 16-row call (2 timed the same, with more spare rows)
SPARE_ROWS = LANES - MIN_ROWS16  # how far a 16-row call may run past the last valid row
PREFETCH = 1024  # weights fetched this far ahead (floats: 4 KB, 128 (tap, channel) pairs)


@intrinsic
def _wide_vectors(typingctx):  # type: ignore[no-untyped-def]
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
def _prefetch(typingctx, arr, idx):  # type: ignore[no-untyped-def]
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


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _rows16(x, xo, cs, toff, w, wo, wseg, runs, rb, acc):  # compiled
    """16 rows × 8 outputs: ``acc[o, i] += x[row i, tap, c] · w[tap, c, o]`` over the runs of
    (tap, channel) that ``runs[rb:]`` lists (see :class:`_Tables`); ``x[xo + toff[tap] + c·cs
    + i]`` is row i's input at (tap, channel c). Accumulator ``a3`` is output 0 at row 3, ``b3``
    output 1, … (the SLP vectorizer packs each output's 16 rows into one vector). The weights
    stream from memory (a step reads every active block's, up to ~30 MB): they are prefetched
    :data:`PREFETCH` floats ahead."""
    _wide_vectors()
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
            _prefetch(w, q + _U(PREFETCH))
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


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _row1(x, xo, cs, toff, w, wo, wseg, runs, rb, acc):  # compiled
    """1 row × 8 outputs: ``acc[o] += x[tap, c] · w[tap, c, o]``, as :func:`_rows16`."""
    _wide_vectors()
    a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
    a4, a5, a6, a7 = acc[4], acc[5], acc[6], acc[7]
    eight, step = _U(OUT), _U(cs)
    for j in range(runs[rb]):
        s, lo, n = runs[rb + 1 + 3 * j], runs[rb + 2 + 3 * j], runs[rb + 3 + 3 * j]
        xb = _U(xo + toff[s] + lo * cs)
        q = _U(wo + s * wseg + lo * OUT)
        for _ in range(_U(n)):
            w0, w1, w2, w3 = w[q], w[q + _U(1)], w[q + _U(2)], w[q + _U(3)]
            w4, w5, w6, w7 = w[q + _U(4)], w[q + _U(5)], w[q + _U(6)], w[q + _U(7)]
            v = x[xb]
            q += eight
            xb += step
            a0, a1, a2, a3 = a0 + v * w0, a1 + v * w1, a2 + v * w2, a3 + v * w3
            a4, a5, a6, a7 = a4 + v * w4, a5 + v * w5, a6 + v * w6, a7 + v * w7
    acc[0], acc[1], acc[2], acc[3] = a0, a1, a2, a3
    acc[4], acc[5], acc[6], acc[7] = a4, a5, a6, a7


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _layer(
    bufs, weights, runs, params, table, li, out, t_first, t_hi, t_stride, p, h_lo, h_hi, height, width, r, hp
):  # compiled
    """Layer ``li`` (a row of ``table``) at blocks ``t_first, t_first + t_stride, … ≤ t_hi`` of
    one step (see :func:`step_kernel`). Blocks of one layer are independent: each reads the
    layer below and writes its own channels."""
    _wide_vectors()
    acc = np.zeros((OUT, LANES), np.float32)
    acc1 = np.zeros(OUT, np.float32)
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
                if left >= MIN_ROWS16:
                    rows = min(LANES, left)
                    for o in range(OUT):
                        bias = params[boff + pb + o]
                        for i in range(LANES):
                            acc[o, i] = bias
                    _rows16(bufs, xd + h, hp, toff, weights, wo, wseg, runs, rb, acc)
                else:
                    rows = 1
                    for o in range(OUT):
                        acc1[o] = params[boff + pb + o]
                    _row1(bufs, xd + h, hp, toff, weights, wo, wseg, runs, rb, acc1)
                    for o in range(OUT):
                        acc[o, 0] = acc1[o]
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


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True)
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


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True, parallel=True)
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


_threads_lock = threading.Lock()
_threads_pid: int | None = None


def run_step(parts: int, *args: object) -> None:
    """One step: :func:`step_kernel` with ``args``, on ``parts`` threads where that is safe,
    else on this one (the same results either way). Numba's thread pool is used by one caller
    at a time (its ``workqueue`` layer aborts on concurrent use) and never in a process forked
    after it started (GNU OpenMP's pool does not survive a fork: numba terminates the child);
    torch's thread count is the same after as before."""
    global _threads_pid
    pid = os.getpid()
    if parts > 1 and _threads_pid in (None, pid) and _threads_lock.acquire(blocking=False):
        torch_threads = torch.get_num_threads()
        try:
            first = _threads_pid is None
            _threads_pid = pid
            with _vectorizing(first):  # the first call compiles it (or loads it from the cache)
                step_kernel_threads(*args, parts)
        finally:
            _threads_lock.release()
            # Numba's OpenMP layer sets the process's OpenMP thread count, which is torch's:
            # put torch's back (its products round differently on another count).
            if torch.get_num_threads() != torch_threads:
                torch.set_num_threads(torch_threads)
    else:
        step_kernel(*args)


_compiled = False


def compile_kernel() -> None:
    """Compile (or load from numba's cache) the kernel once per process, with LLVM's SLP
    vectorizer on (numba leaves it off by default): it packs each output's 16 rows (one row's
    8 outputs in :func:`_row1`) into one vector register. Vectorized or not, every output is
    the same chain of FMAs."""
    global _compiled
    if _compiled:
        return
    with _vectorizing(True):
        f32, runs, out = np.zeros(64, np.float32), np.zeros(4, np.int64), np.zeros((1, 1, OUT), np.float32)
        table = np.array([[1, 1, 1, 1, 0, 1, -1, 1, -1, -1, 1, 0, 0, 0, -1]], dtype=np.int64)
        step_kernel(f32, f32, runs, f32, table, out, 0, 0, 0, 0, 0, 1, 1, 0, 1)
    _compiled = True


@contextlib.contextmanager
def _vectorizing(on: bool) -> Iterator[None]:
    """Numba's SLP vectorizer on (when ``on``) for what compiles inside (numba leaves it off)."""
    before = numba_config.SLP_VECTORIZE
    if on:
        numba_config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        numba_config.SLP_VECTORIZE = before
