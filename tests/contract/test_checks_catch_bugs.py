"""The contract checks are only worth something if they fail on broken components."""

from __future__ import annotations

import pytest
import torch

from codec_lab.corelib.streams import Stream
from codec_lab.plugins.coders.histogram import HistogramCoder
from codec_lab.plugins.quantizers.stochastic import StochasticQuantizer
from tests.contract import checks


class _OffByHalf(StochasticQuantizer):
    """Eval output is not what the decoder reconstructs from the symbols."""

    name = "off-by-half"

    def from_symbols(self, symbols: torch.Tensor) -> torch.Tensor:
        return super().from_symbols(symbols) + 0.5


class _PaysForMasked(HistogramCoder):
    """Codes every position, ignoring the mask."""

    name = "pays-for-masked"

    def encode(self, stream: Stream) -> bytes:
        return super().encode(Stream(stream.spec, stream.symbols, None))


class _LyingLikelihoods(HistogramCoder):
    """Reports likelihoods that have nothing to do with the real coder."""

    name = "lying"

    def likelihoods(self, stream: Stream) -> torch.Tensor:
        return torch.full(stream.symbols.shape, 0.99)


def test_quantizer_check_catches_inconsistent_symbols() -> None:
    with pytest.raises(AssertionError, match="from_symbols"):
        checks.check_quantizer(_OffByHalf(bound=7))


def test_coder_check_catches_masked_positions_that_cost_bits() -> None:
    with pytest.raises(AssertionError):
        checks.check_coder(_PaysForMasked)


def test_coder_check_catches_dishonest_likelihoods() -> None:
    with pytest.raises(AssertionError, match="likelihood"):
        checks.check_coder(_LyingLikelihoods)
