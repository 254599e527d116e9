"""Quantizer contract: continuous latent ⇄ symbols of a finite alphabet."""

from __future__ import annotations

import abc
from typing import ClassVar

import torch

from codec_lab.corelib.contracts.base import Component

__all__ = ["Quantizer"]


class Quantizer(Component):
    """Maps the latent to symbols and symbols back to the values the decoder consumes.

    In training mode :meth:`forward` returns a differentiable relaxation (straight-through
    rounding, additive noise); in eval mode it returns exactly
    ``from_symbols(to_symbols(y))``, so ``Codec.forward`` in eval mode and a real
    compress/decompress round trip feed the decoder identical values.

    Attributes:
        alphabet_size: K, the number of symbols (``[0, K)``), or None for an unbounded
            integer alphabet (then only coders that handle that can be composed).
        grid_step: the spacing of the decoder values when they lie on a uniform grid
            (``from_symbols(s + 1) - from_symbols(s)``), None for learned, uneven levels.
            Rate plugins that model a density over unit bins (``entropy``) need it.
    """

    kind: ClassVar[str] = "quantizer"
    alphabet_size: int | None
    grid_step: float | None = None

    @abc.abstractmethod
    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Quantize ``y``: relaxed in training, hard (decoder values) in eval.

        A quantizer that learns from the data in training (``multilevel``'s levels) sees only
        its process's shard in a distributed build: sum its statistics with
        :func:`~codec_lab.contracts.all_reduce_sum` first, as :meth:`Rate.on_epoch_end` explains.
        """

    @abc.abstractmethod
    def to_symbols(self, y_tilde: torch.Tensor) -> torch.Tensor:
        """Symbols (int64) of already-quantized values (the output of :meth:`forward`).

        Symbols lie in ``[0, K)``, or are signed integers when ``alphabet_size`` is None.

        Inputs are (B, C, H, W) from the codec or one image's (C, h, w) from a rate plugin:
        the channel axis is dim −3 (per-channel quantizers index their levels by it).
        """

    @abc.abstractmethod
    def from_symbols(self, symbols: torch.Tensor) -> torch.Tensor:
        """Decoder values (float) of symbols; the exact inverse of :meth:`to_symbols`.

        Same shapes as :meth:`to_symbols` (channel axis dim −3).
        """

    def quantize(self, y: torch.Tensor) -> torch.Tensor:
        """Hard symbols of a continuous latent (deterministic, used for coding)."""
        with torch.no_grad():
            was = self.training
            self.eval()
            try:
                return self.to_symbols(self.forward(y))
            finally:
                self.train(was)
