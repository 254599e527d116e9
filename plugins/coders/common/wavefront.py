"""Step-by-step evaluation of a :class:`ContextNetwork`, the path both coder sides share.

A *schedule* lists the decoding steps. Each step is a set of symbol positions whose
probabilities depend only on symbols of earlier steps: one inclined plane ``c + h + w = π``
(``inclined``: C + H + W − 2 steps) or one symbol (``raster``: C·H·W steps, the slow
reference). At each step every layer is computed only at that step's positions: a layer's
activation at a position needs the layer below at positions already computed (earlier steps,
or this step's, computed just before), so a whole decode costs about one network pass in
arithmetic.

Encoder and decoder both run :class:`Wavefront` over the same schedule, so their
probabilities are bit-identical; the encoder merely knows the symbols in advance.

Layout: activations are stored *sheared*, indexed (anti-diagonal d = h + w, channel, row h).
The positions of one step are, for consecutive blocks t (in decreasing order), consecutive
anti-diagonals over a common range of rows; a kernel row's k taps of every such position are
k consecutive diagonals, so a (tap, channel) pair's offset from the kernel row's first one is
the same for every cell, and runs of consecutive channels across taps are evenly spaced; and
a block's consecutive rows of one channel are consecutive floats, the kernel's vector lanes.
Cells outside the image stay zero (the convolutions' zero padding).

Arithmetic: one compiled kernel per step (:mod:`wavefront_kernel`), every layer, only at the
step's cells in the image and only over the taps the trimmed masks keep. With ``threads`` > 1
a step's blocks are shared among threads, each output still computed whole by one thread:
the probabilities, and so the files, are the same at any thread count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from codec_lab.plugins.coders.common.trimmed import ContextNetwork, Order, TrimmedConv2d
from codec_lab.plugins.coders.common.wavefront_kernel import OUT, SPARE_ROWS
from codec_lab.plugins.coders.common.wavefront_pool import compile_kernel, run_step

__all__ = ["Step", "Wavefront", "schedule", "step_count"]


@dataclass(frozen=True)
class Step:
    """Positions of one step: blocks ``t_hi`` down to ``t_lo`` on anti-diagonals
    ``d_first, d_first + 1, …``, each over rows ``h_lo .. h_lo + rows - 1`` (cells outside
    the image are skipped)."""

    t_lo: int
    t_hi: int
    d_first: int
    h_lo: int
    rows: int


def step_count(order: Order, blocks: int, h: int, w: int) -> int:
    """Sequential steps a decode takes: C + H + W − 2 planes, or C·H·W symbols."""
    return blocks + h + w - 2 if order == "inclined" else blocks * h * w


def schedule(order: Order, blocks: int, h: int, w: int) -> Iterator[Step]:
    """The decoding steps of a (blocks, h, w) grid in coding order."""
    if order == "raster":
        for t in range(blocks):
            for i in range(h):
                for j in range(w):
                    yield Step(t, t, i + j, i, 1)
        return
    for p in range(blocks + h + w - 2):
        t_lo, t_hi = max(0, p - (h - 1) - (w - 1)), min(blocks - 1, p)
        d_lo, d_hi = p - t_hi, p - t_lo
        h_lo, h_hi = max(0, d_lo - (w - 1)), min(h - 1, d_hi)
        yield Step(t_lo, t_hi, d_lo, h_lo, h_hi - h_lo + 1)


# ---------------------------------------------------------------------------- kernel
# Indices are unsigned in the inner loops: numba wraps negative signed indices, and the
# extra select per load turns the 8 contiguous weight loads into a gather.
# ---------------------------------------------------------------------------- network
@dataclass(frozen=True)
class _Meta:
    """One layer's shape and where its data sit in :class:`_Tables`."""

    kernel: int
    cin: int
    group: int
    chunks: int
    cout: int
    weights: int
    runs: int
    bias: int
    slope: int  # -1: no PReLU


class _Tables:
    """A network's layers as the kernel reads them (first, second, residual convs, output):
    weights (block, chunk, dh, dw, Cin, 8), each block's outputs padded to chunks of 8; per
    block the runs of (tap, input channels) its mask keeps, as (count, then tap, first
    channel, length per run); bias and PReLU slopes."""

    def __init__(self, net: ContextNetwork) -> None:
        convs: list[tuple[TrimmedConv2d, torch.nn.PReLU | None]] = [
            (net.first, net.act_first), (net.second, net.act_second)
        ]  # fmt: skip
        for conv_a, act_a, conv_b, act_b in net.res:
            convs += [(conv_a, act_a), (conv_b, act_b)]
        convs.append((net.out, None))
        metas, w_at, r_at, p_at = [], 0, 0, 0
        for conv, act in convs:
            cout, cin, k, _ = conv.weight.shape
            t, chunks = conv.blocks, -(-conv.group_out // OUT)
            slope = p_at + t * chunks * OUT if act is not None else -1
            metas.append(_Meta(k, cin, conv.group_out, chunks, cout, w_at, r_at, p_at, slope))
            w_at += t * chunks * k * k * cin * OUT
            r_at += t * (1 + 3 * k * k)
            p_at += t * chunks * OUT * (2 if act is not None else 1)
        self.metas = metas
        self.weights = np.zeros(w_at, np.float32)
        self.runs = np.zeros(r_at, np.int64)
        self.params = np.zeros(p_at, np.float32)
        with torch.no_grad():
            for (conv, act), m in zip(convs, metas, strict=True):
                self._fill(conv, act, m)

    def _fill(self, conv: TrimmedConv2d, act: torch.nn.PReLU | None, m: _Meta) -> None:
        t, g, k, cin = conv.blocks, m.group, m.kernel, m.cin
        # A trimmed mask depends on the output's block only: each block's first output row.
        keep = conv.mask.view(t, g, cin, k, k)[:, 0].permute(0, 2, 3, 1).bool()  # (T, dh, dw, Cin)
        first = keep.int().argmax(-1)
        last = cin - keep.flip(-1).int().argmax(-1)
        kept = keep.any(-1)
        lo, hi = torch.where(kept, first, 0), torch.where(kept, last, 0)
        # Runs (tap s = dh·k + dw, first channel, length): a tap's channel range, joined
        # with the next tap's of the same kernel row when both meet (the previous one ends
        # at the last channel, the next starts at 0: consecutive diagonals, consecutive
        # weights).
        runs = self.runs[m.runs : m.runs + t * (1 + 3 * k * k)].reshape(t, 1 + 3 * k * k)
        for tn, (los, his) in enumerate(zip(lo.view(t, -1).tolist(), hi.view(t, -1).tolist(), strict=True)):
            found: list[list[int]] = []  # [first tap, first channel, length, last tap, its end]
            for tap, (a, b) in enumerate(zip(los, his, strict=True)):
                if b <= a:
                    continue
                run = found[-1] if found else None
                if run is not None and run[3] + 1 == tap and tap % k and run[4] == cin and a == 0:
                    run[2], run[3], run[4] = run[2] + b, tap, b
                else:
                    found.append([tap, a, b - a, tap, b])
            runs[tn, 0] = len(found)
            for j, run in enumerate(found):
                runs[tn, 1 + 3 * j : 4 + 3 * j] = run[:3]
        # Inside a range every weight is kept (a trimmed mask keeps a prefix of channels):
        # the raw weights will do, the masked ones otherwise.
        contiguous = bool((keep.sum(-1) == hi - lo).all())
        w = (conv.weight if contiguous else conv.masked_weight()).detach().float().view(t, g, cin, k, k)
        dst = torch.from_numpy(self.weights[m.weights : m.weights + t * m.chunks * k * k * cin * OUT])
        dst = dst.view(t, m.chunks, k, k, cin, OUT)
        for ch in range(m.chunks):
            n = min(OUT, g - ch * OUT)
            dst[:, ch, ..., :n] = w[:, ch * OUT : ch * OUT + n].permute(0, 3, 4, 2, 1)
        params = torch.from_numpy(self.params)
        size = t * m.chunks * OUT
        bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros(m.cout)
        params[m.bias : m.bias + size].view(t, -1)[:, :g] = bias.view(t, g)
        if act is not None:
            params[m.slope : m.slope + size].view(t, -1)[:, :g] = act.weight.detach().float().view(t, g)

    @staticmethod
    def of(net: ContextNetwork) -> _Tables:
        """The tables of ``net``, kept with it while its parameters stay the same (keyed on
        every tensor's identity, version counter and storage, as ``Codec.weights_digest``):
        an encoder or decoder called image after image arranges the weights once."""
        key = tuple((id(v), v._version, v.data_ptr(), v.dtype, tuple(v.shape))
                    for v in net.state_dict(keep_vars=True).values())  # fmt: skip
        hit = net.__dict__.get("_wavefront_tables")
        if hit is not None and hit[0] == key:
            return hit[1]
        tables = _Tables(net)
        net.__dict__["_wavefront_tables"] = (key, tables)  # a plain attribute: not in the state dict
        return tables


class Wavefront:
    """Evaluates ``net`` step by step on one (blocks, H, W) grid.

    Args:
        net: the context network (eval mode; its weights are read once).
        height, width: the grid's spatial size.
        condition: (1, Ccond, H, W) conditioning input, or None.
        threads: CPU threads a step's blocks may be shared among (the results do not depend
            on it).
    """

    def __init__(
        self,
        net: ContextNetwork,
        height: int,
        width: int,
        condition: torch.Tensor | None = None,
        threads: int = 1,
    ) -> None:
        compile_kernel()
        self.net, self.h, self.w, self.threads = net, height, width, max(1, threads)
        self.blocks, self.alphabet = net.blocks, net.alphabet
        tables = _Tables.of(net)
        metas = tables.metas
        self.r = r = max(m.kernel for m in metas) // 2
        # Row h at h + r (and spare rows below); diagonal d at d + 2r (taps reach d ± 2r).
        self.hp, self.dp = height + 2 * r + SPARE_ROWS, height + width - 1 + 4 * r
        cells = self.hp * self.dp
        # Every buffer lives in one flat array: input, hidden activations, condition.
        use_condition = net.condition is not None and condition is not None
        sizes = [self.blocks] + [m.cout for m in metas[:-1]] + ([metas[0].cout] if use_condition else [])
        offsets = np.cumsum([0] + [cells * c for c in sizes]).tolist()
        self._flat = torch.zeros(offsets[-1])
        views = [self._flat[o : o + cells * c].view(self.dp, c, self.hp)
                 for o, c in zip(offsets, sizes, strict=False)]  # fmt: skip
        self.input, self.hidden = views[0], views[1 : len(metas)]
        self.condition: torch.Tensor | None = None
        if use_condition:
            assert net.condition is not None and condition is not None
            with torch.no_grad():
                cond = net.condition(condition)[0]  # computed once: known everywhere
            self.condition = views[-1]
            self._shear(cond, self.condition)
        table = []
        for i, m in enumerate(metas):
            assert sizes[i] == m.cin, "a layer reads every channel of the buffer below"
            last = i == len(metas) - 1
            # Layers: 0 first, 1 second, then per residual block 2+2j and 3+2j; the second
            # conv of a block adds the block's input (layer 1's output or the last block's).
            res = offsets[i - 1] if i >= 3 and i % 2 == 1 else -1
            cond_at = offsets[-2] if i == 0 and use_condition else -1
            table.append([
                m.kernel, m.cin, m.group, m.chunks,
                offsets[i], sizes[i], -1 if last else offsets[i + 1], 0 if last else sizes[i + 1],
                res, cond_at, sizes[-1] if cond_at >= 0 else 0,
                m.weights, m.runs, m.bias, m.slope,
            ])  # fmt: skip
        self._table = np.array(table, dtype=np.int64)
        self._tables = tables
        self._bufs = self._flat.numpy()
        self._last_cells: tuple[Step, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] | None = None

    def _shear(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """Write (C, H, W) into ``out`` in the sheared (D, C, H + 2r + spare) layout."""
        hh = torch.arange(self.h).view(-1, 1)
        dd = hh + torch.arange(self.w).view(1, -1)
        out[dd + 2 * self.r, :, hh + self.r] = x.permute(1, 2, 0).float()

    def _cells(self, buf: torch.Tensor, step: Step, group: int) -> torch.Tensor:
        """View (T_a, rows, group) of block t's ``group`` channels at the step's cells
        (blocks in decreasing order, so consecutive blocks sit on consecutive diagonals)."""
        c, hp = buf.shape[1], self.hp
        base = ((step.d_first + 2 * self.r) * c + step.t_hi * group) * hp + step.h_lo + self.r
        n = step.t_hi - step.t_lo + 1
        return buf.as_strided((n, step.rows, group), ((c - group) * hp, 1, hp), buf.storage_offset() + base)

    def cells(self, step: Step) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(valid, t, h, w)`` as numpy arrays: (T_a, rows) bool, which of the step's cells lie
        in the image, and the block, row and column of those, in the order :meth:`step_logits`
        returns them (kept for the step being worked on: the coders ask several times)."""
        if self._last_cells is not None and self._last_cells[0] == step:
            return self._last_cells[1]
        n = step.t_hi - step.t_lo + 1
        d = step.d_first + np.arange(n).reshape(-1, 1)
        h = step.h_lo + np.arange(step.rows).reshape(1, -1)
        w = d - h
        v = (w >= 0) & (w < self.w)
        t = np.broadcast_to((step.t_hi - np.arange(n)).reshape(-1, 1), v.shape)
        cells = (v, t[v], np.broadcast_to(h, v.shape)[v], w[v])
        self._last_cells = (step, cells)
        return cells

    # ------------------------------------------------------------------ stepping
    def step_logits(self, step: Step) -> np.ndarray:
        """Compute every layer at ``step``'s cells; the logits (T_a, rows, K), float32 (zero at
        cells outside the image: select them with :meth:`cells`)."""
        n = step.t_hi - step.t_lo + 1
        out = np.zeros((n, step.rows, self.alphabet), np.float32)
        tables = self._tables
        run_step(min(self.threads, n), self._bufs, tables.weights, tables.runs, tables.params, self._table,
                 out, step.t_lo, step.t_hi, step.d_first + step.t_hi, step.h_lo, step.h_lo + step.rows - 1,
                 self.h, self.w, self.r, self.hp)  # fmt: skip
        return out

    def write_values(self, step: Step, values: np.ndarray) -> None:
        """Store a step's inputs (T_a, rows), float32: ``(s + 1) / K`` where sent, else (and
        outside the image) 0."""
        self._cells(self.input, step, 1).numpy()[..., 0] = values * self.cells(step)[0]
