"""Histogram coder: integer frequencies, training-time statistics, fitting, coding errors."""

from __future__ import annotations

import pytest
import torch

from codec_lab.corelib.errors import BitstreamError, ConfigError
from codec_lab.corelib.streams import Stream, StreamSpec
from codec_lab.corelib.testing import setup_coder
from codec_lab.plugins.coders.histogram import PRECISION, HistogramCoder, integer_frequencies

SPEC = StreamSpec("y", 2, 5)


@pytest.mark.parametrize(
    "counts",
    [
        torch.zeros(3, 7),
        torch.ones(2, 31),
        torch.tensor([[1e12, 0, 0, 0, 0], [0, 0, 0, 0, 3]]),
        torch.rand(4, 1000, generator=torch.Generator().manual_seed(0)) * 1e6,
        torch.tensor([[5.0, 0.0]]),
        torch.arange(65535.0)[None],
    ],
    ids=["zeros", "uniform", "skewed", "wide", "binary", "huge-alphabet"],
)
def test_integer_frequencies_sum_exactly_and_stay_positive(counts: torch.Tensor) -> None:
    freq = integer_frequencies(counts)
    assert freq.dtype == torch.int64 and freq.shape == counts.shape
    assert torch.all(freq.sum(-1) == 2**20)
    assert torch.all(freq >= 1)


def test_integer_frequencies_follow_the_counts() -> None:
    freq = integer_frequencies(torch.tensor([[10.0, 30.0, 60.0, 0.0]]))[0]
    assert freq[3] < freq[0] < freq[1] < freq[2]
    p = freq.double() / 2**20
    assert p[2] == pytest.approx(60.5 / 102, rel=1e-4)


def test_integer_frequencies_other_precision() -> None:
    assert int(integer_frequencies(torch.rand(1, 9), precision=12).sum()) == 4096


def _coder() -> HistogramCoder:
    c = HistogramCoder(momentum=0.5)
    setup_coder(c, [SPEC])
    return c


def test_likelihoods_are_the_coding_probabilities() -> None:
    c = _coder().eval()
    sym = torch.tensor([[[[0, 4]], [[2, 2]]]])
    lk = c.likelihoods(Stream(SPEC, sym))
    freq = c.freq_y
    expected = torch.tensor([[[[freq[0, 0], freq[0, 4]]], [[freq[1, 2], freq[1, 2]]]]]).float() / 2**PRECISION
    assert torch.equal(lk, expected)


def test_training_follows_the_codes_with_a_moving_average() -> None:
    c = _coder().train()
    sym = torch.full((1, 2, 3, 3), 1)
    c.likelihoods(Stream(SPEC, sym))
    c.likelihoods(Stream(SPEC, sym))
    assert c.counts_y[0].tolist() == [0, 9 * 1.5, 0, 0, 0]
    assert c.freq_y[0, 1] > 2**19
    c.eval()
    before = c.counts_y.clone()
    c.likelihoods(Stream(SPEC, sym))
    assert torch.equal(c.counts_y, before)


def test_fitting_counts_only_transmitted_symbols() -> None:
    c = _coder().train()
    c.likelihoods(Stream(SPEC, torch.full((1, 2, 2, 2), 4)))
    c.fit_begin()
    assert not c.counts_y.any()
    sym = torch.tensor([[[[1, 3]], [[0, 0]]]])
    mask = torch.tensor([[[[True, False]], [[True, True]]]])
    c.fit_observe([Stream(SPEC, sym, mask)])
    c.fit_end()
    assert c.fitted
    assert c.counts_y.tolist() == [[0, 1, 0, 0, 0], [2, 0, 0, 0, 0]]
    assert torch.equal(c.freq_y, integer_frequencies(c.counts_y))


def test_state_is_saved_with_the_model() -> None:
    c = _coder()
    assert {"counts_y", "freq_y", "is_fitted"} <= set(c.state_dict())
    c.fit_begin()
    c.fit_end()
    other = _coder()
    other.load_state_dict(c.state_dict())
    assert other.fitted


def test_encode_refuses_symbols_outside_the_alphabet() -> None:
    with pytest.raises(ValueError, match="outside its alphabet"):
        _coder().encode(Stream(SPEC, torch.full((2, 2, 2), 5)))


def test_decode_refuses_damaged_lengths() -> None:
    c = _coder()
    with pytest.raises(BitstreamError, match="multiple of 4"):
        c.decode(b"abc", SPEC, (2, 2, 2), None)
    # No words is a valid stream (near-certain symbols cost no bits); a wrong decode of it is
    # caught by the file's symbol checksum (tests/corelib/test_files.py).
    assert c.decode(b"", SPEC, (2, 2, 2), None).shape == (2, 2, 2)


def test_skewed_codes_cost_less_than_uniform() -> None:
    c = _coder()
    gen = torch.Generator().manual_seed(0)
    sym = (torch.rand(2, 16, 16, generator=gen) < 0.05).long() + 2
    c.fit_begin()
    c.fit_observe([Stream(SPEC, sym[None])])
    c.fit_end()
    data = c.encode(Stream(SPEC, sym))
    assert len(data) * 8 < 0.5 * sym.numel()  # far below log2(5) ≈ 2.3 bits per symbol
    assert torch.equal(c.decode(data, SPEC, (2, 16, 16), None), sym)


def test_momentum_and_alphabet_checks() -> None:
    with pytest.raises(ConfigError, match="momentum"):
        HistogramCoder(momentum=1.0)
    with pytest.raises(ConfigError, match="no finite alphabet"):
        setup_coder(HistogramCoder(), [StreamSpec("y", 2, 0)])

    class _Unbounded:
        alphabet_size = None

    assert "finite alphabet" in HistogramCoder().check_composition({"quantizer": _Unbounded()})
