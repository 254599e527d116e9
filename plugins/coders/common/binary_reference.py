"""The cabac engine written plainly in Python: the same bytes as the compiled kernels of
:mod:`…common.binary_coder`, for reading and for the tests that hold the kernels to it."""

from __future__ import annotations

import numpy as np

from codec_lab.plugins.coders.common.binarization import ContextLayout
from codec_lab.plugins.coders.common.binary_coder import (
    FSM_NEXT_LPS,
    FSM_P_LPS,
    MASK32,
    ONE,
    PROB_BITS,
    TOP,
    Adaptation,
    warmup_rates,
)

__all__ = ["reference_bins", "reference_decode", "reference_encode"]


def reference_encode(bins: list[tuple[int, int]], adapt: Adaptation,
                      init: tuple[list[int], list[int]]) -> bytes:  # fmt: skip
    """Pure-Python encoder of (context, bit) pairs: the kernel's engine, written plainly."""
    a, b = list(init[0]), list(init[1])
    rates = [int(r) for r in warmup_rates(adapt.shift, adapt.warmup)]
    low, rng, cache, pending, out = 0, MASK32, 0, 1, bytearray()

    def shift_low() -> None:
        nonlocal low, cache, pending
        if low < 0xFF000000 or low > MASK32:
            carry, temp = low >> 32, cache
            while True:
                out.append((temp + carry) & 0xFF)
                temp = 0xFF
                pending -= 1
                if not pending:
                    break
            cache = (low >> 24) & 0xFF
        pending += 1
        low = (low & 0xFFFFFF) << 8

    for ctx, bit in bins:
        p0 = _p0(adapt, a[ctx], b[ctx])
        bound = (rng >> PROB_BITS) * p0
        if bit:
            low, rng = low + bound, rng - bound
        else:
            rng = bound
        while rng < TOP:
            rng <<= 8
            shift_low()
        _update(adapt, a, b, ctx, bit, rates)
    for z in range(32, -1, -1):
        val = (low + (1 << z) - 1) >> z << z
        if val - low < rng:
            low = val
            break
    for _ in range(5):
        shift_low()
    return bytes(out[1:]).rstrip(b"\0")


def reference_decode(data: bytes, contexts: list[int], adapt: Adaptation,
                      init: tuple[list[int], list[int]]) -> list[int]:  # fmt: skip
    """Pure-Python decoder of the bits of a known sequence of contexts."""
    a, b = list(init[0]), list(init[1])
    rates = [int(r) for r in warmup_rates(adapt.shift, adapt.warmup)]
    stream = iter(data)
    code = 0
    for _ in range(4):
        code = (code << 8) | next(stream, 0)
    rng, bits = MASK32, []
    for ctx in contexts:
        p0 = _p0(adapt, a[ctx], b[ctx])
        bound = (rng >> PROB_BITS) * p0
        if code < bound:
            rng, bit = bound, 0
        else:
            code, rng, bit = code - bound, rng - bound, 1
        while rng < TOP:
            rng <<= 8
            code = ((code << 8) | next(stream, 0)) & MASK32
        _update(adapt, a, b, ctx, bit, rates)
        bits.append(bit)
    return bits


def _p0(adapt: Adaptation, a: int, b: int) -> int:
    if not adapt.fsm:
        return a
    p_lps = int(FSM_P_LPS[a])
    return ONE - p_lps if b == 0 else p_lps


def _update(adapt: Adaptation, a: list[int], b: list[int], ctx: int, bit: int,
                      rates: list[int]) -> None:  # fmt: skip
    if adapt.fsm:
        if bit == b[ctx]:
            a[ctx] = min(a[ctx] + 1, 62)
        else:
            if a[ctx] == 0:
                b[ctx] = 1 - b[ctx]
            a[ctx] = int(FSM_NEXT_LPS[a[ctx]])
        return
    r = rates[b[ctx]]
    p = a[ctx]
    p = p + ((ONE - p) >> r) if bit == 0 else p - (p >> r)
    a[ctx] = p
    b[ctx] = min(b[ctx] + 1, len(rates) - 1)


def reference_bins(sym: np.ndarray, mask: np.ndarray, layout: ContextLayout) -> list[tuple[int, int]]:
    """The (context, bit) sequence of a grid, computed plainly (for tests)."""
    cls = layout.classes
    n = layout.n_classes
    c_n, h, w = mask.shape
    out = []
    for c in range(c_n):
        for i in range(h):
            for j in range(w):
                if not mask[c, i, j]:
                    continue

                def klass(cc: int, ii: int, jj: int) -> int:
                    if cc < 0 or ii < 0 or jj < 0 or not mask[cc, ii, jj]:
                        return 0
                    return int(cls[sym[cc, ii, jj]])

                combo = klass(c, i, j - 1) * n + klass(c, i - 1, j)
                if layout.previous_channel:
                    combo = combo * n + klass(c - 1, i, j)
                if layout.per_channel:
                    combo += c * layout.combos
                for node, bit in layout.binarization.bins(int(sym[c, i, j])):
                    out.append((combo * layout.binarization.nodes + node, bit))
    return out
