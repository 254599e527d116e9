"""The compiled kernel of :class:`~codec_lab.plugins.coders.common.wavefront.Wavefront`: one
decoding step of a trimmed context network, every layer, in numba.

Arithmetic: one compiled kernel (numba, :func:`step_kernel`) computes a whole step, every layer,
only at the step's cells that lie in the image, and for each (block, tap) only over the
input channels its trimmed mask keeps: about half of a full convolution's products (a
batched matrix product per kernel row would multiply every masked zero and every cell of
the step's bounding parallelogram: 3.2× the products, in small, inefficient products). Its
inner loop keeps 16 rows × 8 outputs of a block in registers, one 8-lane FMA per row and
input channel (8, 4 or 1 rows at the end of a block's rows; a call may run up to 3 rows past
them, and those results are dropped). Every output is its bias plus its taps in a fixed
order (kernel row, kernel column, input channel), each a fused multiply-add, however the
step's cells were grouped; the kernel is single-threaded, so the thread count changes
nothing. It is compiled on first use and kept in numba's cache (about 12 s once, then about
0.3 s to load per process).

FMA contraction (``fastmath={"contract"}``) makes each multiply-add one rounding on CPUs with
FMA; a CPU without FMA would compute other last bits, so files are exact between machines that
both have it (x86-64 with FMA3: Intel since 2013, AMD since 2012, not some low-power Atom,
Celeron and Pentium parts; every 64-bit ARM).
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import config as numba_config

__all__ = ["OUT", "SPARE_ROWS", "compile_kernel", "step_kernel"]

_U = np.uint64
_FASTMATH = {"contract"}  # a·b + c as one FMA; nothing is reordered
OUT = 8  # outputs per kernel call (a layer's outputs are padded to a multiple)
SPARE_ROWS = 3  # a 16- or 8-row call may run up to 3 rows past the last valid one


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _rows16(x, xo, xs, toff, w, wo, wseg, runs, rb, acc):  # compiled
    """16 rows × 8 outputs: ``acc[i, o] += x[row i, tap, c] · w[tap, c, o]`` over the runs of (tap,
    channel) that ``runs[rb:]`` lists (see :class:`_Tables`)."""
    a0_0, a0_1, a0_2, a0_3 = acc[0, 0], acc[0, 1], acc[0, 2], acc[0, 3]
    a0_4, a0_5, a0_6, a0_7 = acc[0, 4], acc[0, 5], acc[0, 6], acc[0, 7]
    a1_0, a1_1, a1_2, a1_3 = acc[1, 0], acc[1, 1], acc[1, 2], acc[1, 3]
    a1_4, a1_5, a1_6, a1_7 = acc[1, 4], acc[1, 5], acc[1, 6], acc[1, 7]
    a2_0, a2_1, a2_2, a2_3 = acc[2, 0], acc[2, 1], acc[2, 2], acc[2, 3]
    a2_4, a2_5, a2_6, a2_7 = acc[2, 4], acc[2, 5], acc[2, 6], acc[2, 7]
    a3_0, a3_1, a3_2, a3_3 = acc[3, 0], acc[3, 1], acc[3, 2], acc[3, 3]
    a3_4, a3_5, a3_6, a3_7 = acc[3, 4], acc[3, 5], acc[3, 6], acc[3, 7]
    a4_0, a4_1, a4_2, a4_3 = acc[4, 0], acc[4, 1], acc[4, 2], acc[4, 3]
    a4_4, a4_5, a4_6, a4_7 = acc[4, 4], acc[4, 5], acc[4, 6], acc[4, 7]
    a5_0, a5_1, a5_2, a5_3 = acc[5, 0], acc[5, 1], acc[5, 2], acc[5, 3]
    a5_4, a5_5, a5_6, a5_7 = acc[5, 4], acc[5, 5], acc[5, 6], acc[5, 7]
    a6_0, a6_1, a6_2, a6_3 = acc[6, 0], acc[6, 1], acc[6, 2], acc[6, 3]
    a6_4, a6_5, a6_6, a6_7 = acc[6, 4], acc[6, 5], acc[6, 6], acc[6, 7]
    a7_0, a7_1, a7_2, a7_3 = acc[7, 0], acc[7, 1], acc[7, 2], acc[7, 3]
    a7_4, a7_5, a7_6, a7_7 = acc[7, 4], acc[7, 5], acc[7, 6], acc[7, 7]
    a8_0, a8_1, a8_2, a8_3 = acc[8, 0], acc[8, 1], acc[8, 2], acc[8, 3]
    a8_4, a8_5, a8_6, a8_7 = acc[8, 4], acc[8, 5], acc[8, 6], acc[8, 7]
    a9_0, a9_1, a9_2, a9_3 = acc[9, 0], acc[9, 1], acc[9, 2], acc[9, 3]
    a9_4, a9_5, a9_6, a9_7 = acc[9, 4], acc[9, 5], acc[9, 6], acc[9, 7]
    a10_0, a10_1, a10_2, a10_3 = acc[10, 0], acc[10, 1], acc[10, 2], acc[10, 3]
    a10_4, a10_5, a10_6, a10_7 = acc[10, 4], acc[10, 5], acc[10, 6], acc[10, 7]
    a11_0, a11_1, a11_2, a11_3 = acc[11, 0], acc[11, 1], acc[11, 2], acc[11, 3]
    a11_4, a11_5, a11_6, a11_7 = acc[11, 4], acc[11, 5], acc[11, 6], acc[11, 7]
    a12_0, a12_1, a12_2, a12_3 = acc[12, 0], acc[12, 1], acc[12, 2], acc[12, 3]
    a12_4, a12_5, a12_6, a12_7 = acc[12, 4], acc[12, 5], acc[12, 6], acc[12, 7]
    a13_0, a13_1, a13_2, a13_3 = acc[13, 0], acc[13, 1], acc[13, 2], acc[13, 3]
    a13_4, a13_5, a13_6, a13_7 = acc[13, 4], acc[13, 5], acc[13, 6], acc[13, 7]
    a14_0, a14_1, a14_2, a14_3 = acc[14, 0], acc[14, 1], acc[14, 2], acc[14, 3]
    a14_4, a14_5, a14_6, a14_7 = acc[14, 4], acc[14, 5], acc[14, 6], acc[14, 7]
    a15_0, a15_1, a15_2, a15_3 = acc[15, 0], acc[15, 1], acc[15, 2], acc[15, 3]
    a15_4, a15_5, a15_6, a15_7 = acc[15, 4], acc[15, 5], acc[15, 6], acc[15, 7]
    one, eight, step = _U(1), _U(8), _U(xs)
    for j in range(runs[rb]):
        s, lo, n = runs[rb + 1 + 3 * j], runs[rb + 2 + 3 * j], runs[rb + 3 + 3 * j]
        x0 = _U(xo + toff[s] + lo)
        x1 = x0 + step
        x2 = x1 + step
        x3 = x2 + step
        x4 = x3 + step
        x5 = x4 + step
        x6 = x5 + step
        x7 = x6 + step
        x8 = x7 + step
        x9 = x8 + step
        x10 = x9 + step
        x11 = x10 + step
        x12 = x11 + step
        x13 = x12 + step
        x14 = x13 + step
        x15 = x14 + step
        q = _U(wo + s * wseg + lo * OUT)
        for c in range(_U(n)):
            w0, w1, w2, w3 = w[q], w[q + one], w[q + _U(2)], w[q + _U(3)]
            w4, w5, w6, w7 = w[q + _U(4)], w[q + _U(5)], w[q + _U(6)], w[q + _U(7)]
            q += eight
            v = x[x0 + c]
            a0_0, a0_1, a0_2, a0_3 = a0_0 + v * w0, a0_1 + v * w1, a0_2 + v * w2, a0_3 + v * w3
            a0_4, a0_5, a0_6, a0_7 = a0_4 + v * w4, a0_5 + v * w5, a0_6 + v * w6, a0_7 + v * w7
            v = x[x1 + c]
            a1_0, a1_1, a1_2, a1_3 = a1_0 + v * w0, a1_1 + v * w1, a1_2 + v * w2, a1_3 + v * w3
            a1_4, a1_5, a1_6, a1_7 = a1_4 + v * w4, a1_5 + v * w5, a1_6 + v * w6, a1_7 + v * w7
            v = x[x2 + c]
            a2_0, a2_1, a2_2, a2_3 = a2_0 + v * w0, a2_1 + v * w1, a2_2 + v * w2, a2_3 + v * w3
            a2_4, a2_5, a2_6, a2_7 = a2_4 + v * w4, a2_5 + v * w5, a2_6 + v * w6, a2_7 + v * w7
            v = x[x3 + c]
            a3_0, a3_1, a3_2, a3_3 = a3_0 + v * w0, a3_1 + v * w1, a3_2 + v * w2, a3_3 + v * w3
            a3_4, a3_5, a3_6, a3_7 = a3_4 + v * w4, a3_5 + v * w5, a3_6 + v * w6, a3_7 + v * w7
            v = x[x4 + c]
            a4_0, a4_1, a4_2, a4_3 = a4_0 + v * w0, a4_1 + v * w1, a4_2 + v * w2, a4_3 + v * w3
            a4_4, a4_5, a4_6, a4_7 = a4_4 + v * w4, a4_5 + v * w5, a4_6 + v * w6, a4_7 + v * w7
            v = x[x5 + c]
            a5_0, a5_1, a5_2, a5_3 = a5_0 + v * w0, a5_1 + v * w1, a5_2 + v * w2, a5_3 + v * w3
            a5_4, a5_5, a5_6, a5_7 = a5_4 + v * w4, a5_5 + v * w5, a5_6 + v * w6, a5_7 + v * w7
            v = x[x6 + c]
            a6_0, a6_1, a6_2, a6_3 = a6_0 + v * w0, a6_1 + v * w1, a6_2 + v * w2, a6_3 + v * w3
            a6_4, a6_5, a6_6, a6_7 = a6_4 + v * w4, a6_5 + v * w5, a6_6 + v * w6, a6_7 + v * w7
            v = x[x7 + c]
            a7_0, a7_1, a7_2, a7_3 = a7_0 + v * w0, a7_1 + v * w1, a7_2 + v * w2, a7_3 + v * w3
            a7_4, a7_5, a7_6, a7_7 = a7_4 + v * w4, a7_5 + v * w5, a7_6 + v * w6, a7_7 + v * w7
            v = x[x8 + c]
            a8_0, a8_1, a8_2, a8_3 = a8_0 + v * w0, a8_1 + v * w1, a8_2 + v * w2, a8_3 + v * w3
            a8_4, a8_5, a8_6, a8_7 = a8_4 + v * w4, a8_5 + v * w5, a8_6 + v * w6, a8_7 + v * w7
            v = x[x9 + c]
            a9_0, a9_1, a9_2, a9_3 = a9_0 + v * w0, a9_1 + v * w1, a9_2 + v * w2, a9_3 + v * w3
            a9_4, a9_5, a9_6, a9_7 = a9_4 + v * w4, a9_5 + v * w5, a9_6 + v * w6, a9_7 + v * w7
            v = x[x10 + c]
            a10_0, a10_1, a10_2, a10_3 = a10_0 + v * w0, a10_1 + v * w1, a10_2 + v * w2, a10_3 + v * w3
            a10_4, a10_5, a10_6, a10_7 = a10_4 + v * w4, a10_5 + v * w5, a10_6 + v * w6, a10_7 + v * w7
            v = x[x11 + c]
            a11_0, a11_1, a11_2, a11_3 = a11_0 + v * w0, a11_1 + v * w1, a11_2 + v * w2, a11_3 + v * w3
            a11_4, a11_5, a11_6, a11_7 = a11_4 + v * w4, a11_5 + v * w5, a11_6 + v * w6, a11_7 + v * w7
            v = x[x12 + c]
            a12_0, a12_1, a12_2, a12_3 = a12_0 + v * w0, a12_1 + v * w1, a12_2 + v * w2, a12_3 + v * w3
            a12_4, a12_5, a12_6, a12_7 = a12_4 + v * w4, a12_5 + v * w5, a12_6 + v * w6, a12_7 + v * w7
            v = x[x13 + c]
            a13_0, a13_1, a13_2, a13_3 = a13_0 + v * w0, a13_1 + v * w1, a13_2 + v * w2, a13_3 + v * w3
            a13_4, a13_5, a13_6, a13_7 = a13_4 + v * w4, a13_5 + v * w5, a13_6 + v * w6, a13_7 + v * w7
            v = x[x14 + c]
            a14_0, a14_1, a14_2, a14_3 = a14_0 + v * w0, a14_1 + v * w1, a14_2 + v * w2, a14_3 + v * w3
            a14_4, a14_5, a14_6, a14_7 = a14_4 + v * w4, a14_5 + v * w5, a14_6 + v * w6, a14_7 + v * w7
            v = x[x15 + c]
            a15_0, a15_1, a15_2, a15_3 = a15_0 + v * w0, a15_1 + v * w1, a15_2 + v * w2, a15_3 + v * w3
            a15_4, a15_5, a15_6, a15_7 = a15_4 + v * w4, a15_5 + v * w5, a15_6 + v * w6, a15_7 + v * w7
    acc[0, 0], acc[0, 1], acc[0, 2], acc[0, 3] = a0_0, a0_1, a0_2, a0_3
    acc[0, 4], acc[0, 5], acc[0, 6], acc[0, 7] = a0_4, a0_5, a0_6, a0_7
    acc[1, 0], acc[1, 1], acc[1, 2], acc[1, 3] = a1_0, a1_1, a1_2, a1_3
    acc[1, 4], acc[1, 5], acc[1, 6], acc[1, 7] = a1_4, a1_5, a1_6, a1_7
    acc[2, 0], acc[2, 1], acc[2, 2], acc[2, 3] = a2_0, a2_1, a2_2, a2_3
    acc[2, 4], acc[2, 5], acc[2, 6], acc[2, 7] = a2_4, a2_5, a2_6, a2_7
    acc[3, 0], acc[3, 1], acc[3, 2], acc[3, 3] = a3_0, a3_1, a3_2, a3_3
    acc[3, 4], acc[3, 5], acc[3, 6], acc[3, 7] = a3_4, a3_5, a3_6, a3_7
    acc[4, 0], acc[4, 1], acc[4, 2], acc[4, 3] = a4_0, a4_1, a4_2, a4_3
    acc[4, 4], acc[4, 5], acc[4, 6], acc[4, 7] = a4_4, a4_5, a4_6, a4_7
    acc[5, 0], acc[5, 1], acc[5, 2], acc[5, 3] = a5_0, a5_1, a5_2, a5_3
    acc[5, 4], acc[5, 5], acc[5, 6], acc[5, 7] = a5_4, a5_5, a5_6, a5_7
    acc[6, 0], acc[6, 1], acc[6, 2], acc[6, 3] = a6_0, a6_1, a6_2, a6_3
    acc[6, 4], acc[6, 5], acc[6, 6], acc[6, 7] = a6_4, a6_5, a6_6, a6_7
    acc[7, 0], acc[7, 1], acc[7, 2], acc[7, 3] = a7_0, a7_1, a7_2, a7_3
    acc[7, 4], acc[7, 5], acc[7, 6], acc[7, 7] = a7_4, a7_5, a7_6, a7_7
    acc[8, 0], acc[8, 1], acc[8, 2], acc[8, 3] = a8_0, a8_1, a8_2, a8_3
    acc[8, 4], acc[8, 5], acc[8, 6], acc[8, 7] = a8_4, a8_5, a8_6, a8_7
    acc[9, 0], acc[9, 1], acc[9, 2], acc[9, 3] = a9_0, a9_1, a9_2, a9_3
    acc[9, 4], acc[9, 5], acc[9, 6], acc[9, 7] = a9_4, a9_5, a9_6, a9_7
    acc[10, 0], acc[10, 1], acc[10, 2], acc[10, 3] = a10_0, a10_1, a10_2, a10_3
    acc[10, 4], acc[10, 5], acc[10, 6], acc[10, 7] = a10_4, a10_5, a10_6, a10_7
    acc[11, 0], acc[11, 1], acc[11, 2], acc[11, 3] = a11_0, a11_1, a11_2, a11_3
    acc[11, 4], acc[11, 5], acc[11, 6], acc[11, 7] = a11_4, a11_5, a11_6, a11_7
    acc[12, 0], acc[12, 1], acc[12, 2], acc[12, 3] = a12_0, a12_1, a12_2, a12_3
    acc[12, 4], acc[12, 5], acc[12, 6], acc[12, 7] = a12_4, a12_5, a12_6, a12_7
    acc[13, 0], acc[13, 1], acc[13, 2], acc[13, 3] = a13_0, a13_1, a13_2, a13_3
    acc[13, 4], acc[13, 5], acc[13, 6], acc[13, 7] = a13_4, a13_5, a13_6, a13_7
    acc[14, 0], acc[14, 1], acc[14, 2], acc[14, 3] = a14_0, a14_1, a14_2, a14_3
    acc[14, 4], acc[14, 5], acc[14, 6], acc[14, 7] = a14_4, a14_5, a14_6, a14_7
    acc[15, 0], acc[15, 1], acc[15, 2], acc[15, 3] = a15_0, a15_1, a15_2, a15_3
    acc[15, 4], acc[15, 5], acc[15, 6], acc[15, 7] = a15_4, a15_5, a15_6, a15_7


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _rows8(x, xo, xs, toff, w, wo, wseg, runs, rb, acc):  # compiled
    """8 rows × 8 outputs: ``acc[i, o] += x[row i, tap, c] · w[tap, c, o]`` over the runs of (tap,
    channel) that ``runs[rb:]`` lists (see :class:`_Tables`)."""
    a0_0, a0_1, a0_2, a0_3 = acc[0, 0], acc[0, 1], acc[0, 2], acc[0, 3]
    a0_4, a0_5, a0_6, a0_7 = acc[0, 4], acc[0, 5], acc[0, 6], acc[0, 7]
    a1_0, a1_1, a1_2, a1_3 = acc[1, 0], acc[1, 1], acc[1, 2], acc[1, 3]
    a1_4, a1_5, a1_6, a1_7 = acc[1, 4], acc[1, 5], acc[1, 6], acc[1, 7]
    a2_0, a2_1, a2_2, a2_3 = acc[2, 0], acc[2, 1], acc[2, 2], acc[2, 3]
    a2_4, a2_5, a2_6, a2_7 = acc[2, 4], acc[2, 5], acc[2, 6], acc[2, 7]
    a3_0, a3_1, a3_2, a3_3 = acc[3, 0], acc[3, 1], acc[3, 2], acc[3, 3]
    a3_4, a3_5, a3_6, a3_7 = acc[3, 4], acc[3, 5], acc[3, 6], acc[3, 7]
    a4_0, a4_1, a4_2, a4_3 = acc[4, 0], acc[4, 1], acc[4, 2], acc[4, 3]
    a4_4, a4_5, a4_6, a4_7 = acc[4, 4], acc[4, 5], acc[4, 6], acc[4, 7]
    a5_0, a5_1, a5_2, a5_3 = acc[5, 0], acc[5, 1], acc[5, 2], acc[5, 3]
    a5_4, a5_5, a5_6, a5_7 = acc[5, 4], acc[5, 5], acc[5, 6], acc[5, 7]
    a6_0, a6_1, a6_2, a6_3 = acc[6, 0], acc[6, 1], acc[6, 2], acc[6, 3]
    a6_4, a6_5, a6_6, a6_7 = acc[6, 4], acc[6, 5], acc[6, 6], acc[6, 7]
    a7_0, a7_1, a7_2, a7_3 = acc[7, 0], acc[7, 1], acc[7, 2], acc[7, 3]
    a7_4, a7_5, a7_6, a7_7 = acc[7, 4], acc[7, 5], acc[7, 6], acc[7, 7]
    one, eight, step = _U(1), _U(8), _U(xs)
    for j in range(runs[rb]):
        s, lo, n = runs[rb + 1 + 3 * j], runs[rb + 2 + 3 * j], runs[rb + 3 + 3 * j]
        x0 = _U(xo + toff[s] + lo)
        x1 = x0 + step
        x2 = x1 + step
        x3 = x2 + step
        x4 = x3 + step
        x5 = x4 + step
        x6 = x5 + step
        x7 = x6 + step
        q = _U(wo + s * wseg + lo * OUT)
        for c in range(_U(n)):
            w0, w1, w2, w3 = w[q], w[q + one], w[q + _U(2)], w[q + _U(3)]
            w4, w5, w6, w7 = w[q + _U(4)], w[q + _U(5)], w[q + _U(6)], w[q + _U(7)]
            q += eight
            v = x[x0 + c]
            a0_0, a0_1, a0_2, a0_3 = a0_0 + v * w0, a0_1 + v * w1, a0_2 + v * w2, a0_3 + v * w3
            a0_4, a0_5, a0_6, a0_7 = a0_4 + v * w4, a0_5 + v * w5, a0_6 + v * w6, a0_7 + v * w7
            v = x[x1 + c]
            a1_0, a1_1, a1_2, a1_3 = a1_0 + v * w0, a1_1 + v * w1, a1_2 + v * w2, a1_3 + v * w3
            a1_4, a1_5, a1_6, a1_7 = a1_4 + v * w4, a1_5 + v * w5, a1_6 + v * w6, a1_7 + v * w7
            v = x[x2 + c]
            a2_0, a2_1, a2_2, a2_3 = a2_0 + v * w0, a2_1 + v * w1, a2_2 + v * w2, a2_3 + v * w3
            a2_4, a2_5, a2_6, a2_7 = a2_4 + v * w4, a2_5 + v * w5, a2_6 + v * w6, a2_7 + v * w7
            v = x[x3 + c]
            a3_0, a3_1, a3_2, a3_3 = a3_0 + v * w0, a3_1 + v * w1, a3_2 + v * w2, a3_3 + v * w3
            a3_4, a3_5, a3_6, a3_7 = a3_4 + v * w4, a3_5 + v * w5, a3_6 + v * w6, a3_7 + v * w7
            v = x[x4 + c]
            a4_0, a4_1, a4_2, a4_3 = a4_0 + v * w0, a4_1 + v * w1, a4_2 + v * w2, a4_3 + v * w3
            a4_4, a4_5, a4_6, a4_7 = a4_4 + v * w4, a4_5 + v * w5, a4_6 + v * w6, a4_7 + v * w7
            v = x[x5 + c]
            a5_0, a5_1, a5_2, a5_3 = a5_0 + v * w0, a5_1 + v * w1, a5_2 + v * w2, a5_3 + v * w3
            a5_4, a5_5, a5_6, a5_7 = a5_4 + v * w4, a5_5 + v * w5, a5_6 + v * w6, a5_7 + v * w7
            v = x[x6 + c]
            a6_0, a6_1, a6_2, a6_3 = a6_0 + v * w0, a6_1 + v * w1, a6_2 + v * w2, a6_3 + v * w3
            a6_4, a6_5, a6_6, a6_7 = a6_4 + v * w4, a6_5 + v * w5, a6_6 + v * w6, a6_7 + v * w7
            v = x[x7 + c]
            a7_0, a7_1, a7_2, a7_3 = a7_0 + v * w0, a7_1 + v * w1, a7_2 + v * w2, a7_3 + v * w3
            a7_4, a7_5, a7_6, a7_7 = a7_4 + v * w4, a7_5 + v * w5, a7_6 + v * w6, a7_7 + v * w7
    acc[0, 0], acc[0, 1], acc[0, 2], acc[0, 3] = a0_0, a0_1, a0_2, a0_3
    acc[0, 4], acc[0, 5], acc[0, 6], acc[0, 7] = a0_4, a0_5, a0_6, a0_7
    acc[1, 0], acc[1, 1], acc[1, 2], acc[1, 3] = a1_0, a1_1, a1_2, a1_3
    acc[1, 4], acc[1, 5], acc[1, 6], acc[1, 7] = a1_4, a1_5, a1_6, a1_7
    acc[2, 0], acc[2, 1], acc[2, 2], acc[2, 3] = a2_0, a2_1, a2_2, a2_3
    acc[2, 4], acc[2, 5], acc[2, 6], acc[2, 7] = a2_4, a2_5, a2_6, a2_7
    acc[3, 0], acc[3, 1], acc[3, 2], acc[3, 3] = a3_0, a3_1, a3_2, a3_3
    acc[3, 4], acc[3, 5], acc[3, 6], acc[3, 7] = a3_4, a3_5, a3_6, a3_7
    acc[4, 0], acc[4, 1], acc[4, 2], acc[4, 3] = a4_0, a4_1, a4_2, a4_3
    acc[4, 4], acc[4, 5], acc[4, 6], acc[4, 7] = a4_4, a4_5, a4_6, a4_7
    acc[5, 0], acc[5, 1], acc[5, 2], acc[5, 3] = a5_0, a5_1, a5_2, a5_3
    acc[5, 4], acc[5, 5], acc[5, 6], acc[5, 7] = a5_4, a5_5, a5_6, a5_7
    acc[6, 0], acc[6, 1], acc[6, 2], acc[6, 3] = a6_0, a6_1, a6_2, a6_3
    acc[6, 4], acc[6, 5], acc[6, 6], acc[6, 7] = a6_4, a6_5, a6_6, a6_7
    acc[7, 0], acc[7, 1], acc[7, 2], acc[7, 3] = a7_0, a7_1, a7_2, a7_3
    acc[7, 4], acc[7, 5], acc[7, 6], acc[7, 7] = a7_4, a7_5, a7_6, a7_7


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _rows4(x, xo, xs, toff, w, wo, wseg, runs, rb, acc):  # compiled
    """4 rows × 8 outputs: ``acc[i, o] += x[row i, tap, c] · w[tap, c, o]`` over the runs of (tap,
    channel) that ``runs[rb:]`` lists (see :class:`_Tables`)."""
    a0_0, a0_1, a0_2, a0_3 = acc[0, 0], acc[0, 1], acc[0, 2], acc[0, 3]
    a0_4, a0_5, a0_6, a0_7 = acc[0, 4], acc[0, 5], acc[0, 6], acc[0, 7]
    a1_0, a1_1, a1_2, a1_3 = acc[1, 0], acc[1, 1], acc[1, 2], acc[1, 3]
    a1_4, a1_5, a1_6, a1_7 = acc[1, 4], acc[1, 5], acc[1, 6], acc[1, 7]
    a2_0, a2_1, a2_2, a2_3 = acc[2, 0], acc[2, 1], acc[2, 2], acc[2, 3]
    a2_4, a2_5, a2_6, a2_7 = acc[2, 4], acc[2, 5], acc[2, 6], acc[2, 7]
    a3_0, a3_1, a3_2, a3_3 = acc[3, 0], acc[3, 1], acc[3, 2], acc[3, 3]
    a3_4, a3_5, a3_6, a3_7 = acc[3, 4], acc[3, 5], acc[3, 6], acc[3, 7]
    one, eight, step = _U(1), _U(8), _U(xs)
    for j in range(runs[rb]):
        s, lo, n = runs[rb + 1 + 3 * j], runs[rb + 2 + 3 * j], runs[rb + 3 + 3 * j]
        x0 = _U(xo + toff[s] + lo)
        x1 = x0 + step
        x2 = x1 + step
        x3 = x2 + step
        q = _U(wo + s * wseg + lo * OUT)
        for c in range(_U(n)):
            w0, w1, w2, w3 = w[q], w[q + one], w[q + _U(2)], w[q + _U(3)]
            w4, w5, w6, w7 = w[q + _U(4)], w[q + _U(5)], w[q + _U(6)], w[q + _U(7)]
            q += eight
            v = x[x0 + c]
            a0_0, a0_1, a0_2, a0_3 = a0_0 + v * w0, a0_1 + v * w1, a0_2 + v * w2, a0_3 + v * w3
            a0_4, a0_5, a0_6, a0_7 = a0_4 + v * w4, a0_5 + v * w5, a0_6 + v * w6, a0_7 + v * w7
            v = x[x1 + c]
            a1_0, a1_1, a1_2, a1_3 = a1_0 + v * w0, a1_1 + v * w1, a1_2 + v * w2, a1_3 + v * w3
            a1_4, a1_5, a1_6, a1_7 = a1_4 + v * w4, a1_5 + v * w5, a1_6 + v * w6, a1_7 + v * w7
            v = x[x2 + c]
            a2_0, a2_1, a2_2, a2_3 = a2_0 + v * w0, a2_1 + v * w1, a2_2 + v * w2, a2_3 + v * w3
            a2_4, a2_5, a2_6, a2_7 = a2_4 + v * w4, a2_5 + v * w5, a2_6 + v * w6, a2_7 + v * w7
            v = x[x3 + c]
            a3_0, a3_1, a3_2, a3_3 = a3_0 + v * w0, a3_1 + v * w1, a3_2 + v * w2, a3_3 + v * w3
            a3_4, a3_5, a3_6, a3_7 = a3_4 + v * w4, a3_5 + v * w5, a3_6 + v * w6, a3_7 + v * w7
    acc[0, 0], acc[0, 1], acc[0, 2], acc[0, 3] = a0_0, a0_1, a0_2, a0_3
    acc[0, 4], acc[0, 5], acc[0, 6], acc[0, 7] = a0_4, a0_5, a0_6, a0_7
    acc[1, 0], acc[1, 1], acc[1, 2], acc[1, 3] = a1_0, a1_1, a1_2, a1_3
    acc[1, 4], acc[1, 5], acc[1, 6], acc[1, 7] = a1_4, a1_5, a1_6, a1_7
    acc[2, 0], acc[2, 1], acc[2, 2], acc[2, 3] = a2_0, a2_1, a2_2, a2_3
    acc[2, 4], acc[2, 5], acc[2, 6], acc[2, 7] = a2_4, a2_5, a2_6, a2_7
    acc[3, 0], acc[3, 1], acc[3, 2], acc[3, 3] = a3_0, a3_1, a3_2, a3_3
    acc[3, 4], acc[3, 5], acc[3, 6], acc[3, 7] = a3_4, a3_5, a3_6, a3_7


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _rows1(x, xo, xs, toff, w, wo, wseg, runs, rb, acc):  # compiled
    """1 row × 8 outputs: ``acc[i, o] += x[row i, tap, c] · w[tap, c, o]`` over the runs of (tap,
    channel) that ``runs[rb:]`` lists (see :class:`_Tables`)."""
    a0_0, a0_1, a0_2, a0_3 = acc[0, 0], acc[0, 1], acc[0, 2], acc[0, 3]
    a0_4, a0_5, a0_6, a0_7 = acc[0, 4], acc[0, 5], acc[0, 6], acc[0, 7]
    one, eight = _U(1), _U(8)
    for j in range(runs[rb]):
        s, lo, n = runs[rb + 1 + 3 * j], runs[rb + 2 + 3 * j], runs[rb + 3 + 3 * j]
        x0 = _U(xo + toff[s] + lo)
        q = _U(wo + s * wseg + lo * OUT)
        for c in range(_U(n)):
            w0, w1, w2, w3 = w[q], w[q + one], w[q + _U(2)], w[q + _U(3)]
            w4, w5, w6, w7 = w[q + _U(4)], w[q + _U(5)], w[q + _U(6)], w[q + _U(7)]
            q += eight
            v = x[x0 + c]
            a0_0, a0_1, a0_2, a0_3 = a0_0 + v * w0, a0_1 + v * w1, a0_2 + v * w2, a0_3 + v * w3
            a0_4, a0_5, a0_6, a0_7 = a0_4 + v * w4, a0_5 + v * w5, a0_6 + v * w6, a0_7 + v * w7
    acc[0, 0], acc[0, 1], acc[0, 2], acc[0, 3] = a0_0, a0_1, a0_2, a0_3
    acc[0, 4], acc[0, 5], acc[0, 6], acc[0, 7] = a0_4, a0_5, a0_6, a0_7


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True)
def step_kernel(bufs, weights, runs, params, table, out, t_lo, t_hi, p, h_lo, h_hi, height, width, r, dp):
    """Every layer (rows of ``table``) at one step's cells: blocks ``t_lo..t_hi``, block t on
    diagonal ``p - t``, rows ``h_lo..h_hi`` clipped to the image. Hidden layers write their
    activations into ``bufs``; the last writes logits into ``out[t_hi - t, h - h_lo, :]``.

    ``table`` columns: kernel, input channels, outputs per block, output chunks of 8, then
    offsets into ``bufs`` and channel counts: source, its channels, destination (-1: the
    last layer), its channels, residual (-1: none), condition (-1: none), its channels; then
    offsets of the layer's weights (block, chunk, dh, dw, channel, 8), its runs of taps and
    channels (block, 1 + 3·k²) and its bias and slope (block, chunk·8; slope -1: no PReLU)
    in ``params``.
    """
    acc = np.zeros((16, OUT), np.float32)
    for li in range(table.shape[0]):
        k, cin, g, nchunk = table[li, 0], table[li, 1], table[li, 2], table[li, 3]
        src, csrc, dst, cdst = table[li, 4], table[li, 5], table[li, 6], table[li, 7]
        res, cond, ccond = table[li, 8], table[li, 9], table[li, 10]
        woff, roff, boff, soff = table[li, 11], table[li, 12], table[li, 13], table[li, 14]
        rk, nseg = k // 2, k * k
        toff = np.empty(nseg, np.int64)  # tap (dh, dw) relative to tap (0, 0): rows and diagonals
        for a in range(k):
            for b in range(k):
                toff[a * k + b] = (a * dp + a + b) * csrc
        xs, wseg = dp * csrc, cin * OUT
        for tn in range(t_lo, t_hi + 1):
            d = p - tn
            h0, h1 = max(h_lo, d - width + 1, 0), min(h_hi, d, height - 1)
            rb = roff + tn * (1 + 3 * nseg)
            for ch in range(nchunk):
                wo = woff + (tn * nchunk + ch) * nseg * wseg
                pb = tn * nchunk * OUT + ch * OUT
                h = h0
                while h <= h1:
                    left = h1 - h + 1
                    rows = 16 if left >= 13 else (8 if left >= 5 else (4 if left >= 2 else 1))
                    for i in range(rows):
                        for o in range(OUT):
                            acc[i, o] = params[boff + pb + o]
                    xo = src + ((h + r - rk) * dp + d + 2 * r - 2 * rk) * csrc
                    if rows == 16:
                        _rows16(bufs, xo, xs, toff, weights, wo, wseg, runs, rb, acc)
                    elif rows == 8:
                        _rows8(bufs, xo, xs, toff, weights, wo, wseg, runs, rb, acc)
                    elif rows == 4:
                        _rows4(bufs, xo, xs, toff, weights, wo, wseg, runs, rb, acc)
                    else:
                        _rows1(bufs, xo, xs, toff, weights, wo, wseg, runs, rb, acc)
                    for i in range(min(rows, left)):
                        cell = (h + i + r) * dp + d + 2 * r
                        for o in range(min(OUT, g - ch * OUT)):
                            v = acc[i, o]
                            c = tn * g + ch * OUT + o
                            if cond >= 0:
                                v += bufs[cond + cell * ccond + c]
                            if soff >= 0 and v < 0:
                                v *= params[soff + pb + o]
                            if dst < 0:
                                out[t_hi - tn, h + i - h_lo, ch * OUT + o] = v
                            else:
                                if res >= 0:
                                    v += bufs[res + cell * cdst + c]
                                bufs[dst + cell * cdst + c] = v
                    h += rows


_compiled = False


def compile_kernel() -> None:
    """Compile (or load from numba's cache) the kernel once per process, with LLVM's SLP
    vectorizer on (numba leaves it off by default): it packs each row's 8 accumulators into
    one vector register. Vectorized or not, every output is the same chain of FMAs."""
    global _compiled
    if _compiled:
        return
    before = numba_config.SLP_VECTORIZE
    numba_config.SLP_VECTORIZE = 1
    try:
        f32, runs, out = np.zeros(64, np.float32), np.zeros(4, np.int64), np.zeros((1, 1, OUT), np.float32)
        table = np.array([[1, 1, 1, 1, 0, 1, -1, 1, -1, -1, 1, 0, 0, 0, -1]], dtype=np.int64)
        step_kernel(f32, f32, runs, f32, table, out, 0, 0, 0, 0, 0, 1, 1, 0, 1)
    finally:
        numba_config.SLP_VECTORIZE = before
    _compiled = True
