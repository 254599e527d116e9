"""The contract checks are only worth something if they fail on broken components."""

from __future__ import annotations

import pytest
import torch

from codec_lab.corelib.streams import Stream
from codec_lab.plugins.baselines.pillow import JPEG
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


# ---------------------------------------------------------------- every rule is named
class _FloatSymbols(StochasticQuantizer):
    """Symbols as float32."""

    name = "float-symbols"

    def to_symbols(self, y_tilde: torch.Tensor) -> torch.Tensor:
        return super().to_symbols(y_tilde).float()


class _PeeksAhead(HistogramCoder):
    """Likelihoods of a symbol depend on the symbols left and right of it."""

    name = "peeks-ahead"

    def likelihoods(self, stream: Stream, context=None) -> torch.Tensor:
        p = super().likelihoods(stream, context)
        s = stream.symbols
        odd = (torch.nn.functional.pad(s, (1, 0))[..., :-1] + torch.nn.functional.pad(s, (0, 1))[..., 1:]) % 2
        return torch.where(stream.full_mask() & (odd == 1), p * 0.999, p)


class _Shrinks(JPEG):
    """Decodes an image of half the size."""

    name = "shrinks"

    def decode(self, data: bytes):
        return super().decode(data)[::2, ::2].copy()


class _Shuffled(JPEG):
    """Its sweep runs from the largest files to the smallest."""

    name = "shuffled"
    sweep = (90, 50, 10)


def test_a_violation_names_its_rule_what_happened_and_what_to_fix() -> None:
    with pytest.raises(checks.ContractViolation) as e:
        checks.check_coder(_FloatDecode)
    v = e.value
    assert (v.rule, v.detail) == ("decode returns int64 symbols of the stream's shape",
                                  "decode returned torch.float32; decode must return int64 symbols")
    assert "int64" in v.hint and str(v).startswith(f'rule "{v.rule}" failed: {v.detail}')


def test_quantizer_check_names_float_symbols() -> None:
    rule = r'rule "symbols are int64 in \[0, K\)" failed: to_symbols returned torch.float32'
    with pytest.raises(AssertionError, match=rule):
        checks.check_quantizer(_FloatSymbols(bound=7))


def test_coder_check_catches_a_non_causal_model() -> None:
    with pytest.raises(AssertionError, match="depend on each other in a cycle"):
        checks.check_coder(_PeeksAhead)


def test_baseline_check_catches_the_wrong_size_and_a_reversed_sweep() -> None:
    checks.check_baseline(JPEG())
    with pytest.raises(AssertionError, match=r"decode returned \(24, 32, 3\) uint8 for a 48×64 image"):
        checks.check_baseline(_Shrinks)
    with pytest.raises(AssertionError, match="files grow along the sweep"):
        checks.check_baseline(_Shuffled())


def test_rules_run_one_by_one() -> None:
    """Each rule of a kind runs on its own: a failure in one leaves the others to report."""
    outcomes = {}
    for rule in checks.coder_rules(_FloatDecode):
        try:
            rule.run()
            outcomes[rule.name] = "passed"
        except checks.RuleSkipped:
            outcomes[rule.name] = "skipped"
        except AssertionError:
            outcomes[rule.name] = "failed"
    failed = [n for n, o in outcomes.items() if o == "failed"]
    assert failed == ["decode returns int64 symbols of the stream's shape"]
    assert list(outcomes.values()).count("passed") >= 8
