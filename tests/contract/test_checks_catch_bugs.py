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

    def encode(self, stream: Stream, context=None) -> bytes:
        return super().encode(Stream(stream.spec, stream.symbols, None), context)


class _LyingLikelihoods(HistogramCoder):
    """Reports likelihoods that have nothing to do with the real coder."""

    name = "lying"

    def likelihoods(self, stream: Stream, context=None) -> torch.Tensor:
        return torch.full(stream.symbols.shape, 0.99)


class _FloatDecode(HistogramCoder):
    """Decodes to float32 symbols."""

    name = "float-decode"

    def decode(self, data, spec, shape, mask, context=None) -> torch.Tensor:
        return super().decode(data, spec, shape, mask, context).float()


class _ContextMismatch(HistogramCoder):
    """Conditions the decoder on the earlier streams but not the encoder."""

    name = "context-mismatch"

    def decode(self, data, spec, shape, mask, context=None) -> torch.Tensor:
        out = super().decode(data, spec, shape, mask, context)
        if context:  # a later stream: shift by what the encoder never saw
            out = torch.where(out > 0, out - 1, out)
        return out


class _OverclaimedEstimate(HistogramCoder):
    """Declares its likelihoods an estimate within 1 %, then misses by far more."""

    name = "overclaimed"
    likelihoods_exact = False
    likelihood_tolerance = 0.01

    def likelihoods(self, stream: Stream, context=None) -> torch.Tensor:
        p = super().likelihoods(stream, context)
        return torch.where(stream.full_mask(), p.sqrt(), p)  # half the real bits


def test_quantizer_check_catches_inconsistent_symbols() -> None:
    with pytest.raises(AssertionError, match="from_symbols"):
        checks.check_quantizer(_OffByHalf(bound=7))


def test_coder_check_catches_masked_positions_that_cost_bits() -> None:
    with pytest.raises(AssertionError):
        checks.check_coder(_PaysForMasked)


def test_coder_check_catches_dishonest_likelihoods() -> None:
    with pytest.raises(AssertionError, match="likelihood"):
        checks.check_coder(_LyingLikelihoods)


def test_coder_check_names_a_float_decode() -> None:
    with pytest.raises(AssertionError, match="int64"):
        checks.check_coder(_FloatDecode)


def test_coder_check_catches_a_decoder_that_conditions_differently() -> None:
    with pytest.raises(AssertionError, match="bit-exact"):
        checks.check_coder(_ContextMismatch)


def test_coder_check_holds_an_estimate_to_its_tolerance() -> None:
    with pytest.raises(AssertionError, match="estimate claimed"):
        checks.check_coder(_OverclaimedEstimate)
