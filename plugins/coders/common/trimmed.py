"""Trimmed (masked) convolutions over blocks of channels, and the TCAE context network.

Feature maps are organised as one block of channels per code channel (methods-spec §2.5):
output channel ``o`` belongs to block ``o // group_out``, input channel ``i`` to block
``i // group_in``. A fixed 0/1 mask multiplies the weights at every forward, so a masked
weight stays zero through training. The mask decides the coding order:

* ``raster`` (GMA strict / GMB inclusive, the TCAE papers): channel by channel, raster
  (row, column) inside a channel;
* ``inclined`` (constraints 5 / 6, the TPAMI coders): by plane index ``π = c + h + w``; every
  symbol of a plane depends only on earlier planes, so a plane decodes in one batched step.

The first layer is strict (a symbol never sees itself); later layers may read the current
position, because a hidden feature there depends only on strictly earlier symbols.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ORDERS", "ContextNetwork", "Order", "TrimmedConv2d", "trimmed_mask"]

Order = Literal["raster", "inclined"]
ORDERS: tuple[Order, ...] = ("raster", "inclined")


def trimmed_mask(
    order: Order, blocks: int, group_in: int, group_out: int, kernel: int, strict: bool
) -> torch.Tensor:
    """The 0/1 weight mask (blocks·group_out, blocks·group_in, k, k) of one trimmed layer.

    ``raster``: keep iff ``tc < tn`` or (``tc == tn`` and the offset precedes the centre in
    raster order; the centre itself only when not ``strict``). ``inclined``: keep iff
    ``(tc - tn) + dh + dw < 0`` (strict) or ``≤ 0``.
    """
    r = kernel // 2
    tn = torch.arange(blocks * group_out).div(group_out, rounding_mode="floor").view(-1, 1, 1, 1)
    tc = torch.arange(blocks * group_in).div(group_in, rounding_mode="floor").view(1, -1, 1, 1)
    dh = (torch.arange(kernel) - r).view(1, 1, -1, 1)
    dw = (torch.arange(kernel) - r).view(1, 1, 1, -1)
    if order == "inclined":
        s = (tc - tn) + dh + dw
        keep = s < 0 if strict else s <= 0
    elif order == "raster":
        before = (dh < 0) | ((dh == 0) & ((dw < 0) if strict else (dw <= 0)))
        keep = (tc < tn) | ((tc == tn) & before)
    else:
        raise ValueError(f"unknown coding order {order!r}; valid: {', '.join(ORDERS)}")
    return keep.to(torch.float32)


class TrimmedConv2d(nn.Conv2d):
    """A same-padded convolution whose weights are multiplied by a fixed trimmed mask."""

    def __init__(
        self,
        blocks: int,
        group_in: int,
        group_out: int,
        kernel: int,
        order: Order,
        strict: bool,
    ) -> None:
        super().__init__(blocks * group_in, blocks * group_out, kernel, padding=kernel // 2)
        self.blocks, self.group_in, self.group_out = blocks, group_in, group_out
        self.register_buffer(
            "mask", trimmed_mask(order, blocks, group_in, group_out, kernel, strict), persistent=False
        )

    def masked_weight(self) -> torch.Tensor:
        """The weights as used: zero wherever the mask is."""
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.masked_weight(), self.bias, padding=self.padding)


class ContextNetwork(nn.Module):
    """The TCAE context model: a categorical distribution for every symbol, in one pass.

    Topology (TPAMI lossless_deploy, methods-spec §2.5): a strict trimmed conv to ``width``
    channels per block, PReLU; an inclusive one, PReLU; ``res_blocks`` residual blocks of two
    inclusive convs with PReLU after each, the input added after the second (no activation
    after the add); an inclusive ``out_kernel`` conv to ``alphabet`` logits per block.

    The input is one channel per code channel: ``(s + 1) / K`` where a symbol is sent and
    known, 0 elsewhere. ``condition_channels`` (may be 0) feed an ordinary convolution added
    to the first layer: what the decoder knows everywhere before decoding the stream (the
    stream's mask, earlier streams), so it is visible at every position.
    """

    def __init__(
        self,
        blocks: int,
        alphabet: int,
        width: int,
        kernel: int,
        out_kernel: int,
        res_blocks: int,
        order: Order,
        condition_channels: int = 0,
    ) -> None:
        super().__init__()
        self.blocks, self.alphabet, self.width, self.order = blocks, alphabet, width, order
        c = blocks * width
        self.first = TrimmedConv2d(blocks, 1, width, kernel, order, strict=True)
        self.condition = (
            nn.Conv2d(condition_channels, c, kernel, padding=kernel // 2, bias=False)
            if condition_channels else None
        )  # fmt: skip
        self.act_first = nn.PReLU(c, init=0.25)
        self.second = TrimmedConv2d(blocks, width, width, kernel, order, strict=False)
        self.act_second = nn.PReLU(c, init=0.25)
        self.res = nn.ModuleList()
        for _ in range(res_blocks):
            self.res.append(nn.ModuleList([
                TrimmedConv2d(blocks, width, width, kernel, order, strict=False), nn.PReLU(c, init=0.25),
                TrimmedConv2d(blocks, width, width, kernel, order, strict=False), nn.PReLU(c, init=0.25),
            ]))  # fmt: skip
        self.out = TrimmedConv2d(blocks, width, alphabet, out_kernel, order, strict=False)
        # An untrained model predicts the uniform distribution exactly: its likelihoods need
        # no network pass, and training starts from an honest "log2 K bits" baseline.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, blocks, K, H, W) for inputs (B, blocks, H, W)."""
        h = self.first(x)
        if self.condition is not None and condition is not None:
            h = h + self.condition(condition)
        h = self.act_second(self.second(self.act_first(h)))
        for conv_a, act_a, conv_b, act_b in self.res:
            h = h + act_b(conv_b(act_a(conv_a(h))))
        logits = self.out(h)
        b, _, hh, ww = logits.shape
        return logits.view(b, self.blocks, self.alphabet, hh, ww)
