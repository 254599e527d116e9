"""Step-by-step evaluation of a :class:`ContextNetwork`, the path both coder sides share.

A *schedule* lists the decoding steps. Each step is a set of symbol positions whose
probabilities depend only on symbols of earlier steps: one inclined plane ``c + h + w = π``
(``inclined``: C + H + W − 2 steps) or one symbol (``raster``: C·H·W steps, the slow
reference). At each step every layer is computed only at that step's positions: a layer's
activation at a position needs the layer below at positions already computed (earlier steps,
or this step's, computed just before), so a whole decode costs about one network pass in
arithmetic.

Encoder and decoder both run :class:`Wavefront` over the same schedule with the same shapes,
so their probabilities are bit-identical; the encoder merely knows the symbols in advance.

Layout: activations are stored *sheared*, indexed (row h, anti-diagonal d = h + w, channel).
The positions of one step are, for consecutive blocks t (in decreasing order), consecutive
anti-diagonals over a common range of rows, and a kernel row's k taps of every such position
are k consecutive diagonals: a contiguous run of k·C values. So each kernel row of a layer
is one batched matrix product on a strided *view* of the buffer, with no gather copy.
Cells outside the image stay zero (the convolutions' zero padding).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from codec_lab.plugins.coders.common.trimmed import ContextNetwork, Order, TrimmedConv2d

__all__ = ["Step", "Wavefront", "schedule", "step_count"]


@dataclass(frozen=True)
class Step:
    """Positions of one step: blocks ``t_hi`` down to ``t_lo`` on anti-diagonals
    ``d_first, d_first + 1, …``, each over rows ``h_lo .. h_lo + rows - 1`` (cells outside
    the image are computed and discarded)."""

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


class _Layer:
    """One trimmed conv as the wavefront uses it: per kernel row, per block (reversed), the
    (k·Cin, g) weights matching a run of k diagonals × Cin channels."""

    def __init__(self, conv: TrimmedConv2d, act: torch.nn.PReLU | None) -> None:
        w = conv.masked_weight().detach()
        cout, cin, k, _ = w.shape
        t, g = conv.blocks, conv.group_out
        # (T, g, Cin, dh, dw) → (dh, T reversed, dw, Cin, g)
        w = w.view(t, g, cin, k, k).permute(3, 0, 4, 2, 1).flip(1)
        self.rows = [w[i].reshape(t, k * cin, g).contiguous() for i in range(k)]
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(cout)
        self.bias = bias.view(t, 1, g).flip(0).contiguous()
        self.slope = act.weight.detach().view(t, 1, g).flip(0).contiguous() if act is not None else None
        self.kernel, self.group, self.cin, self.cout, self.blocks = k, g, cin, cout, t


class Wavefront:
    """Evaluates ``net`` step by step on one (blocks, H, W) grid.

    Args:
        net: the context network (eval mode; its weights are read once).
        height, width: the grid's spatial size.
        condition: (1, Ccond, H, W) conditioning input, or None.
    """

    def __init__(
        self, net: ContextNetwork, height: int, width: int, condition: torch.Tensor | None = None
    ) -> None:
        self.net, self.h, self.w = net, height, width
        self.blocks, self.alphabet = net.blocks, net.alphabet
        convs: list[tuple[TrimmedConv2d, torch.nn.PReLU | None]] = [
            (net.first, net.act_first), (net.second, net.act_second)
        ]  # fmt: skip
        for conv_a, act_a, conv_b, act_b in net.res:
            convs += [(conv_a, act_a), (conv_b, act_b)]
        convs.append((net.out, None))
        self.layers = [_Layer(c, a) for c, a in convs]
        self.r = r = max(layer.kernel for layer in self.layers) // 2
        # Rows h + r; diagonal d at column d + 2r (taps reach d ± 2r).
        self.hp, self.dp = height + 2 * r, height + width - 1 + 4 * r
        self.input = torch.zeros(self.hp, self.dp, self.blocks)
        self.hidden = [torch.zeros(self.hp, self.dp, layer.cout) for layer in self.layers[:-1]]
        self._valid: tuple[Step, torch.Tensor] | None = None
        self.condition: torch.Tensor | None = None
        if net.condition is not None and condition is not None:
            with torch.no_grad():
                cond = net.condition(condition)[0]  # computed once: known everywhere
            self.condition = self._shear(cond)

    def _shear(self, x: torch.Tensor) -> torch.Tensor:
        """(C, H, W) → the sheared (H + 2r, D, C) layout, zero outside the image."""
        out = torch.zeros(self.hp, self.dp, x.shape[0])
        hh = torch.arange(self.h).view(-1, 1)
        dd = hh + torch.arange(self.w).view(1, -1)
        out[hh + self.r, dd + 2 * self.r] = x.permute(1, 2, 0)
        return out

    # ------------------------------------------------------------------ views
    def _cells(self, buf: torch.Tensor, step: Step, group: int) -> torch.Tensor:
        """View (T_a, rows, group) of block t's ``group`` channels at the step's cells
        (blocks in decreasing order, so consecutive blocks sit on consecutive diagonals)."""
        c = buf.shape[-1]
        base = ((step.h_lo + self.r) * self.dp + step.d_first + 2 * self.r) * c + step.t_hi * group
        n = step.t_hi - step.t_lo + 1
        return buf.as_strided((n, step.rows, group), (c - group, self.dp * c, 1), base)

    def _taps(self, buf: torch.Tensor, step: Step, dh: int, k: int) -> torch.Tensor:
        """View (T_a, rows, k·C): kernel row ``dh``'s k taps of every cell, all channels."""
        c = buf.shape[-1]
        base = ((step.h_lo + dh + self.r) * self.dp + step.d_first + dh - k // 2 + 2 * self.r) * c
        n = step.t_hi - step.t_lo + 1
        return buf.as_strided((n, step.rows, k * c), (c, self.dp * c, 1), base)

    def valid(self, step: Step) -> torch.Tensor:
        """(T_a, rows) bool: which of the step's cells lie in the image (kept for the step
        being worked on: logits, positions and write all ask for it)."""
        if self._valid is not None and self._valid[0] == step:
            return self._valid[1]
        n = step.t_hi - step.t_lo + 1
        d = step.d_first + torch.arange(n).view(-1, 1)
        w = d - (step.h_lo + torch.arange(step.rows).view(1, -1))
        v = (w >= 0) & (w < self.w)
        self._valid = (step, v)
        return v

    def positions(self, step: Step) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(t, h, w) of the step's valid cells, in the order :meth:`logits` returns them."""
        n = step.t_hi - step.t_lo + 1
        t = (step.t_hi - torch.arange(n)).view(-1, 1).expand(n, step.rows)
        h = (step.h_lo + torch.arange(step.rows)).view(1, -1).expand(n, step.rows)
        d = (step.d_first + torch.arange(n)).view(-1, 1).expand(n, step.rows)
        v = self.valid(step)
        return t[v], h[v], (d - h)[v]

    # ------------------------------------------------------------------ stepping
    def logits(self, step: Step) -> torch.Tensor:
        """Compute every layer at ``step``'s cells; the logits (T_a, rows, K) (garbage at
        cells outside the image: select them with :meth:`valid`)."""
        valid = self.valid(step).unsqueeze(-1).to(self.input.dtype)
        lo, hi = self.blocks - 1 - step.t_hi, self.blocks - step.t_lo  # reversed block slice
        source, residual = self.input, None
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            k, rk = layer.kernel, layer.kernel // 2
            y = torch.baddbmm(layer.bias[lo:hi], self._taps(source, step, -rk, k), layer.rows[0][lo:hi])
            for row in range(1, k):
                y.baddbmm_(self._taps(source, step, row - rk, k), layer.rows[row][lo:hi])
            if i == 0 and self.condition is not None:
                y += self._cells(self.condition, step, layer.group)
            if layer.slope is not None:
                y = torch.where(y >= 0, y, y * layer.slope[lo:hi])
            if i == last:
                return y
            # Layers: 0 first, 1 second, then per residual block 2+2j and 3+2j; the second
            # conv of a block adds the block's input (layer 1's output or the last block's).
            if i >= 3 and i % 2 == 1:
                assert residual is not None
                y += self._cells(residual, step, layer.group)
            out = self.hidden[i]
            self._cells(out, step, layer.group).copy_(y * valid)  # outside the image stays 0
            if i % 2 == 1:
                residual = out
            source = out
        raise AssertionError("unreachable")

    def write(self, step: Step, values: torch.Tensor) -> None:
        """Store a step's inputs (T_a, rows): ``(s + 1) / K`` where sent, else (and outside
        the image) 0."""
        self._cells(self.input, step, 1).copy_(values.unsqueeze(-1) * self.valid(step).unsqueeze(-1))
