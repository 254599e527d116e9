"""Streams: the named symbol tensors a rate plugin hands to an entropy coder.

A codec sends an ordered list of streams. Side streams (an importance map) come first; the
mask of a later stream must be derivable by the decoder from the streams before it or from
the model itself (ADMM's fixed template). Masked-out positions are never coded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Stream", "StreamSpec"]


@dataclass(frozen=True)
class StreamSpec:
    """What the decoder knows about a stream before reading it.

    Attributes:
        name: unique within the codec, e.g. ``"y"`` or ``"importance"``.
        channels: number of channels C of the stream's (C, H, W) symbol grid.
        alphabet: K; every symbol lies in ``[0, K)``. None: signed integers of any size
            (a quantizer without a finite alphabet, coded by coders that escape outliers).
        side: True for side information coded ahead of the main code.
    """

    name: str
    channels: int
    alphabet: int | None
    side: bool = False


@dataclass
class Stream:
    """Symbols of one stream with the mask of transmitted positions.

    Attributes:
        spec: the stream's :class:`StreamSpec`.
        symbols: int64 tensor (B, C, H, W) or (C, H, W), values in ``[0, spec.alphabet)``
            (signed when the alphabet is None).
        mask: bool tensor broadcastable to ``symbols`` (True = transmitted), or None when
            every position is transmitted.
    """

    spec: StreamSpec
    symbols: torch.Tensor
    mask: torch.Tensor | None = None

    def full_mask(self) -> torch.Tensor:
        """The mask expanded to the symbols' shape (all True when there is none)."""
        if self.mask is None:
            return torch.ones_like(self.symbols, dtype=torch.bool)
        return self.mask.expand_as(self.symbols).to(torch.bool)

    def sent(self) -> torch.Tensor:
        """The transmitted symbols, flattened in (C, H, W) raster order."""
        return self.symbols[self.full_mask()]
