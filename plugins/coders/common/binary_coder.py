"""Context-adaptive binary arithmetic coding of one stream, compiled with numba.

**Engine.** An LZMA-style binary range coder: a 32-bit ``range``, a 64-bit ``low`` whose
bit 32 is a carry, propagated into the bytes already out through a one-byte ``cache`` and a
count of pending 0xFF bytes. A bin is coded with the probability of a 0, ``p0 / 2^15``
(``PROB_BITS``): ``bound = (range >> 15) · p0``, a 0 keeps ``[low, low + bound)``, a 1 the
rest; the range is renormalized a byte at a time below 2^24. Everything is integer, so a file
decodes identically on any machine. A few bytes are saved per stream: the first byte out
is always 0 (the coder starts inside ``[0, 1)``) and is left out, and the final value is
chosen inside the last interval with as many trailing zero bits as possible, then trailing
zero bytes are cut: the decoder reads zeros past the end of its data. That also makes damaged
data harmless: the decoder decodes exactly the symbols the mask asks for, whatever the bytes.

**Adaptive states**, one per context, two models:

* ``shift`` — a 15-bit probability counter, ``p0 += (2^15 − p0) >> r`` after a 0 and
  ``p0 −= p0 >> r`` after a 1 (LZMA's update, ``r = shift``). With ``warmup`` each context
  also counts its bins and starts with fast steps, ``r ≈ log2(n + 2)`` after ``n`` bins, so a
  fresh context learns like the Krichevsky–Trofimov estimate (step ``1 / (n + 2)``) before it
  settles to the ``2^-shift`` exponential memory.
* ``fsm`` — CABAC's 64-state machine (H.264 §9.3.1): a state σ = 0..62 and the most
  probable bit; the less probable bit has probability ``0.5·α^σ``, ``α = (0.01875/0.5)^(1/63)``,
  mapped to 15 bits; the transitions ``transIdxMPS = min(σ + 1, 62)`` and ``transIdxLPS`` come
  from the design formula (the nearest state to ``α·p + 1 − α``, in the log domain), which
  differs from the normative table in 10 of 63 entries; the bins are coded by the same range
  coder, with exact multiplication instead of CABAC's 4-cell range table.

**Kernels.** Compiled loops (encode, decode, statistics) walk a (C, h, w) stream channel by
channel in raster order, skip masked positions, pick each symbol's contexts from its
neighbours (as :class:`~.binarization.ContextLayout` defines them), binarize it and code,
decode, count or measure its bins, updating the states as they go. Numba compiles them on
first use and caches the machine code beside this file (``cache=True``); the plain-Python
functions of :mod:`…common.binary_reference` are the same coder written for reading and testing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np

from codec_lab.plugins.coders.common.binarization import ContextLayout

__all__ = [
    "FSM_NEXT_LPS",
    "FSM_P_LPS",
    "PROB_BITS",
    "Adaptation",
    "count_bins",
    "decode",
    "derive_fsm_tables",
    "encode",
    "model_bits",
]

PROB_BITS = 15
ONE = 1 << PROB_BITS
P_MIN = 31
"""Floor of either fitted initial probability (in 2^-15, ≈ 0.1 %). The update itself keeps
``p0`` in ``[1, 2^15 − 1]`` (a step moves at most half the way), ``2^shift − 1`` from either
end once warmed up, so a bin never costs more than 15 bits and no interval collapses."""
TOP = 1 << 24
MASK32 = (1 << 32) - 1
COUNT_CAP = 255
"""Largest bin count a warm-up counter keeps (its step no longer changes well before)."""

States = Literal["shift", "fsm"]


def derive_fsm_tables(bits: int = PROB_BITS) -> tuple[list[int], list[int]]:
    """CABAC's state machine from its design formula: (p_LPS of each state in ``bits``-bit
    fixed point, next state after an LPS). Floats only here, to build the constants below."""
    alpha = (0.01875 / 0.5) ** (1 / 63)
    p = [0.5 * alpha**s for s in range(63)]
    p_lps = [round(x * (1 << bits)) for x in p]
    nxt = [max(0, min(62, round(math.log((alpha * x + 1 - alpha) / 0.5) / math.log(alpha)))) for x in p]
    return p_lps, nxt


# The tables as constants (tests re-derive them): files must not depend on a machine's libm.
FSM_P_LPS = np.array([
    16384, 15552, 14762, 14013, 13301, 12625, 11984, 11376, 10798, 10250, 9729, 9235, 8766,
    8321, 7898, 7497, 7117, 6755, 6412, 6086, 5777, 5484, 5206, 4941, 4690, 4452, 4226, 4011,
    3808, 3614, 3431, 3257, 3091, 2934, 2785, 2644, 2509, 2382, 2261, 2146, 2037, 1934, 1836,
    1742, 1654, 1570, 1490, 1414, 1343, 1274, 1210, 1148, 1090, 1035, 982, 932, 885, 840, 797,
    757, 718, 682, 647,
], dtype=np.int64)  # fmt: skip
FSM_NEXT_LPS = np.array([
    0, 0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9, 10, 10, 11, 12, 13, 14, 14, 15, 16, 17, 17, 18, 19, 20,
    20, 21, 22, 22, 23, 24, 24, 25, 26, 26, 27, 27, 28, 29, 29, 30, 30, 31, 31, 32, 32, 33, 33,
    33, 34, 34, 35, 35, 35, 36, 36, 36, 37, 37, 37, 38, 38,
], dtype=np.int64)  # fmt: skip
FSM_MEMORY = 20.0
"""About how many bins the state machine remembers (1 / (1 − α) ≈ 19.6)."""


def warmup_rates(shift: int, warmup: bool) -> np.ndarray:
    """Update shift after ``n`` bins of a context, n = 0..len−1 (the last one sticks).

    ``round(log2(n + 2))`` in integers (``4^r`` against ``2·(n + 2)^2``), capped at ``shift``.
    """
    if not warmup:
        return np.array([shift], dtype=np.int64)
    rates = []
    for n in range(COUNT_CAP + 1):
        x2 = 2 * (n + 2) ** 2
        r = 0
        while 1 << (2 * r + 1) < x2:  # the r with 2^(2r−1) ≤ (n+2)^2 < 2^(2r+1)
            r += 1
        rates.append(min(r, shift))
        if r >= shift:
            break
    return np.array(rates, dtype=np.int64)


@dataclass(frozen=True)
class Adaptation:
    """How context states start and adapt.

    Attributes:
        states: ``"shift"`` (probability counter) or ``"fsm"`` (CABAC's 64 states).
        shift: the counter's update shift once warmed up.
        warmup: fast first steps for fresh contexts (``shift`` only).
    """

    states: States = "shift"
    shift: int = 6
    warmup: bool = True

    @property
    def fsm(self) -> bool:
        return self.states == "fsm"

    def initial(self, counts: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Initial states (a, b) of ``n`` contexts from fitted bin counts (n, 2), or cold.

        ``shift``: a = p0 (the KT estimate ``(n0 + ½)/(n + 1)`` of the counts) and b = the
        warm-up count (the bins seen, capped). ``fsm``: a = σ nearest that probability, b = the
        most probable bit. Integer arithmetic only. Cold (no counts) is p0 = ½ everywhere.
        """
        if counts is None:
            counts = np.zeros((n, 2), dtype=np.int64)
        c0, c1 = counts[:, 0].astype(np.int64), counts[:, 1].astype(np.int64)
        total = c0 + c1
        p0 = ((2 * c0 + 1) << PROB_BITS) // (2 * total + 2)
        p0 = np.clip(p0, P_MIN, ONE - P_MIN)
        if not self.fsm:
            cap = len(warmup_rates(self.shift, self.warmup)) - 1
            return p0, np.minimum(total, cap)
        mps = (p0 < ONE // 2).astype(np.int64)  # p0 = ½ (cold) → MPS 0, state 0
        p_lps = np.where(mps == 0, ONE - p0, p0)
        # nearest state: FSM_P_LPS decreases; compare with the two neighbours of the insert point
        desc = FSM_P_LPS[::-1]
        i = np.clip(np.searchsorted(desc, p_lps), 1, len(desc) - 1)
        lo, hi = desc[i - 1], desc[i]
        j = np.where(p_lps - lo <= hi - p_lps, i - 1, i)
        sigma = len(desc) - 1 - j
        return sigma.astype(np.int64), mps

    def probability(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Float probability of a 0 of states (a, b) (estimates only, never coding)."""
        if not self.fsm:
            return a.astype(np.float64) / ONE
        p_lps = FSM_P_LPS[a].astype(np.float64) / ONE
        return np.where(b == 0, 1.0 - p_lps, p_lps)

    def memory(self, b: np.ndarray) -> np.ndarray:
        """About how many bins' worth of evidence states (·, b) carry: the pseudo-count of a
        sequential estimate that adapts like the states do (used by likelihood estimates)."""
        if self.fsm:
            return np.full(b.shape, FSM_MEMORY)
        if not self.warmup:
            return np.full(b.shape, float(1 << self.shift))
        return b.astype(np.float64) + 1.0


# ---------------------------------------------------------------------------- kernels
# One compiled loop per job (encode, decode, statistics). The per-bin code (probability,
# coding, state update) is written out in each: a call to a helper taking arrays costs
# numba reference-count updates per bin, which slowed the loops 2–3×.
@numba.njit(cache=True)
def _shift_low(low, cache, pending, buf, n):  # type: ignore[no-untyped-def]
    """Move the top byte of ``low`` out (LZMA's ShiftLow): a byte is held back in ``cache``
    (and 0xFF bytes counted in ``pending``) until no carry can change it any more."""
    if low < 0xFF000000 or low > MASK32:
        carry = low >> 32
        temp = cache
        while True:
            buf[n] = (temp + carry) & 0xFF
            n += 1
            temp = 0xFF
            pending -= 1
            if pending == 0:
                break
        cache = (low >> 24) & 0xFF
    pending += 1
    low = (low & 0x00FFFFFF) << 8
    return low, cache, pending, n


@numba.njit(cache=True)
def _encode_kernel(sym, mask, classes, n_classes, use_prev, per_channel, nodes, path_node, path_bit,
                   fsm, rates, state_a, state_b, p_lps, next_lps):  # type: ignore[no-untyped-def]  # fmt: skip
    """Range-code the sent symbols; returns (buffer, bytes used), the first byte included."""
    n_ch, h, w = mask.shape
    depth = path_node.shape[1]
    combos = n_classes * n_classes * (n_classes if use_prev else 1)
    cap = rates.size - 1
    buf = np.empty(4096, dtype=np.uint8)
    n_out = 0
    low = np.int64(0)
    rng = np.int64(MASK32)
    cache = np.int64(0)
    pending = np.int64(1)
    for c in range(n_ch):
        chan_base = c * combos if per_channel else 0
        for i in range(h):
            for j in range(w):
                if not mask[c, i, j]:
                    continue
                # room for every byte this symbol can release (pending ones included)
                if n_out + pending + 2 * depth + 16 > buf.size:
                    bigger = np.empty(2 * buf.size + 2 * depth + 16, dtype=np.uint8)
                    bigger[:n_out] = buf[:n_out]
                    buf = bigger
                # context: the classes of the left and upper (and previous-channel) symbols
                left = classes[sym[c, i, j - 1]] if j > 0 and mask[c, i, j - 1] else 0
                up = classes[sym[c, i - 1, j]] if i > 0 and mask[c, i - 1, j] else 0
                combo = left * n_classes + up
                if use_prev:
                    prev = classes[sym[c - 1, i, j]] if c > 0 and mask[c - 1, i, j] else 0
                    combo = combo * n_classes + prev
                base = (chan_base + combo) * nodes
                v = sym[c, i, j]
                for d in range(depth):
                    node = path_node[v, d]
                    if node < 0:
                        break
                    bit = path_bit[v, d]
                    ctx = base + node
                    sa = state_a[ctx]
                    sb = state_b[ctx]
                    if fsm:
                        p0 = ONE - p_lps[sa] if sb == 0 else p_lps[sa]
                    else:
                        p0 = sa
                    bound = (rng >> PROB_BITS) * p0
                    if bit == 0:
                        rng = bound
                    else:
                        low += bound
                        rng -= bound
                    while rng < TOP:
                        rng <<= 8
                        low, cache, pending, n_out = _shift_low(low, cache, pending, buf, n_out)
                    # adapt (the same code in every kernel)
                    if fsm:
                        if bit == sb:
                            state_a[ctx] = min(sa + 1, 62)
                        else:
                            if sa == 0:
                                state_b[ctx] = 1 - sb
                            state_a[ctx] = next_lps[sa]
                    else:
                        r = rates[sb]
                        if bit == 0:
                            state_a[ctx] = sa + ((ONE - sa) >> r)
                        else:
                            state_a[ctx] = sa - (sa >> r)
                        state_b[ctx] = sb + (sb < cap)
    # Final value: the point of [low, low + range) with the most trailing zero bits.
    for z in range(32, -1, -1):
        m = (np.int64(1) << z) - 1
        val = (low + m) & ~m
        if val - low < rng:
            low = val
            break
    for _ in range(5):
        low, cache, pending, n_out = _shift_low(low, cache, pending, buf, n_out)
    while n_out > 1 and buf[n_out - 1] == 0:  # the decoder reads zeros past the end
        n_out -= 1
    return buf, n_out


@numba.njit(cache=True)
def _decode_kernel(data, mask, classes, n_classes, use_prev, per_channel, nodes, root, tree_node, child,
                   fsm, rates, state_a, state_b, p_lps, next_lps):  # type: ignore[no-untyped-def]  # fmt: skip
    """Decode exactly the positions of ``mask``; (C, h, w) int64, 0 where masked.

    The binarization is walked as a decision tree: from ``root``, internal node ``t`` codes a
    bin in context node ``tree_node[t]`` and goes on to ``child[t, bit]``; a leaf is
    ``-(symbol + 1)``.
    """
    n_ch, h, w = mask.shape
    out = np.zeros((n_ch, h, w), dtype=np.int64)
    combos = n_classes * n_classes * (n_classes if use_prev else 1)
    cap = rates.size - 1
    # The first byte (always 0) was left out, so the code register starts with the next four.
    size = data.size
    pos = 0
    code = np.int64(0)
    for _ in range(4):
        code = (code << 8) | (np.int64(data[pos]) if pos < size else np.int64(0))
        pos += 1
    rng = np.int64(MASK32)
    for c in range(n_ch):
        chan_base = c * combos if per_channel else 0
        for i in range(h):
            for j in range(w):
                if not mask[c, i, j]:
                    continue
                left = classes[out[c, i, j - 1]] if j > 0 and mask[c, i, j - 1] else 0
                up = classes[out[c, i - 1, j]] if i > 0 and mask[c, i - 1, j] else 0
                combo = left * n_classes + up
                if use_prev:
                    prev = classes[out[c - 1, i, j]] if c > 0 and mask[c - 1, i, j] else 0
                    combo = combo * n_classes + prev
                base = (chan_base + combo) * nodes
                t = root
                while t >= 0:
                    ctx = base + tree_node[t]
                    sa = state_a[ctx]
                    sb = state_b[ctx]
                    if fsm:
                        p0 = ONE - p_lps[sa] if sb == 0 else p_lps[sa]
                    else:
                        p0 = sa
                    bound = (rng >> PROB_BITS) * p0
                    if code < bound:
                        rng = bound
                        bit = 0
                    else:
                        code -= bound
                        rng -= bound
                        bit = 1
                    while rng < TOP:  # zeros past the end of the data
                        rng <<= 8
                        code = ((code << 8) | (np.int64(data[pos]) if pos < size else np.int64(0))) & MASK32
                        pos += 1
                    if fsm:
                        if bit == sb:
                            state_a[ctx] = min(sa + 1, 62)
                        else:
                            if sa == 0:
                                state_b[ctx] = 1 - sb
                            state_a[ctx] = next_lps[sa]
                    else:
                        r = rates[sb]
                        if bit == 0:
                            state_a[ctx] = sa + ((ONE - sa) >> r)
                        else:
                            state_a[ctx] = sa - (sa >> r)
                        state_b[ctx] = sb + (sb < cap)
                    t = child[t, bit]
                out[c, i, j] = -t - 1
    return out


@numba.njit(cache=True)
def _stats_kernel(measure, sym, mask, classes, n_classes, use_prev, per_channel, nodes, path_node, path_bit,
                  fsm, rates, state_a, state_b, p_lps, next_lps, counts):  # type: ignore[no-untyped-def]  # fmt: skip
    """Count the bins per context into ``counts``, or (``measure``) return the bits the
    adaptive model's own probabilities give them."""
    n_ch, h, w = mask.shape
    depth = path_node.shape[1]
    combos = n_classes * n_classes * (n_classes if use_prev else 1)
    cap = rates.size - 1
    bits = 0.0
    for c in range(n_ch):
        chan_base = c * combos if per_channel else 0
        for i in range(h):
            for j in range(w):
                if not mask[c, i, j]:
                    continue
                left = classes[sym[c, i, j - 1]] if j > 0 and mask[c, i, j - 1] else 0
                up = classes[sym[c, i - 1, j]] if i > 0 and mask[c, i - 1, j] else 0
                combo = left * n_classes + up
                if use_prev:
                    prev = classes[sym[c - 1, i, j]] if c > 0 and mask[c - 1, i, j] else 0
                    combo = combo * n_classes + prev
                base = (chan_base + combo) * nodes
                v = sym[c, i, j]
                for d in range(depth):
                    node = path_node[v, d]
                    if node < 0:
                        break
                    bit = path_bit[v, d]
                    ctx = base + node
                    if not measure:
                        counts[ctx, bit] += 1
                        continue
                    sa = state_a[ctx]
                    sb = state_b[ctx]
                    if fsm:
                        p0 = ONE - p_lps[sa] if sb == 0 else p_lps[sa]
                    else:
                        p0 = sa
                    bits -= math.log2((p0 if bit == 0 else ONE - p0) / ONE)
                    if fsm:
                        if bit == sb:
                            state_a[ctx] = min(sa + 1, 62)
                        else:
                            if sa == 0:
                                state_b[ctx] = 1 - sb
                            state_a[ctx] = next_lps[sa]
                    else:
                        r = rates[sb]
                        if bit == 0:
                            state_a[ctx] = sa + ((ONE - sa) >> r)
                        else:
                            state_a[ctx] = sa - (sa >> r)
                        state_b[ctx] = sb + (sb < cap)
    return bits


# ---------------------------------------------------------------------------- API
def _states(adapt: Adaptation, init: tuple[np.ndarray, np.ndarray]) -> tuple:
    """The adaptation arguments of the kernels (copies of the initial states: they change)."""
    return (adapt.fsm, warmup_rates(adapt.shift, adapt.warmup), np.array(init[0], dtype=np.int64),
            np.array(init[1], dtype=np.int64), FSM_P_LPS, FSM_NEXT_LPS)  # fmt: skip


def _layout(layout: ContextLayout) -> tuple:
    return (layout.classes, layout.n_classes, layout.previous_channel, layout.per_channel,
            layout.binarization.nodes)  # fmt: skip


def _grid(sym: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(sym, dtype=np.int64), np.ascontiguousarray(mask, dtype=np.bool_)


def encode(sym: np.ndarray, mask: np.ndarray, layout: ContextLayout, adapt: Adaptation,
           init: tuple[np.ndarray, np.ndarray]) -> bytes:  # fmt: skip
    """Code the sent symbols of a (C, h, w) grid (values in range where ``mask``)."""
    sym, mask = _grid(sym, mask)
    path_node, path_bit = layout.binarization.paths
    buf, n = _encode_kernel(sym, mask, *_layout(layout), path_node, path_bit, *_states(adapt, init))
    return buf[1:n].tobytes()  # the first byte is always 0: left out


def decode(data: bytes, mask: np.ndarray, layout: ContextLayout, adapt: Adaptation,
           init: tuple[np.ndarray, np.ndarray]) -> np.ndarray:  # fmt: skip
    """(C, h, w) int64 symbols, 0 where masked; exactly the positions of ``mask`` are read."""
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    raw = np.frombuffer(bytes(data), dtype=np.uint8).copy()  # writable: one compiled signature
    root, tree_node, child = layout.binarization.decision_tree
    return _decode_kernel(raw, mask, *_layout(layout), root, tree_node, child, *_states(adapt, init))


def count_bins(sym: np.ndarray, mask: np.ndarray, layout: ContextLayout, counts: np.ndarray) -> None:
    """Add the bins of a (C, h, w) grid to ``counts`` (contexts, 2), int64, in place."""
    sym, mask = _grid(sym, mask)
    adapt = Adaptation()
    _stats_kernel(False, sym, mask, *_layout(layout), *layout.binarization.paths,
                  *_states(adapt, adapt.initial(None, 0)), counts)  # fmt: skip


_NO_COUNTS = np.zeros((1, 2), dtype=np.int64)


def model_bits(sym: np.ndarray, mask: np.ndarray, layout: ContextLayout, adapt: Adaptation,
               init: tuple[np.ndarray, np.ndarray]) -> float:  # fmt: skip
    """Bits the adaptive model's own probabilities give the sent symbols (no coder): what an
    ideal arithmetic coder would spend; the real file adds the range coder's overhead."""
    sym, mask = _grid(sym, mask)
    return float(_stats_kernel(True, sym, mask, *_layout(layout), *layout.binarization.paths,
                               *_states(adapt, init), _NO_COUNTS))  # fmt: skip
