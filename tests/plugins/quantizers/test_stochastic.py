"""Stochastic rounding: unbiased in training, straight-through, rounding at test."""

from __future__ import annotations

import pytest
import torch

from codec_lab.corelib.errors import ConfigError
from codec_lab.plugins.quantizers.stochastic import StochasticQuantizer


@pytest.mark.parametrize("value", [0.3, -1.7, 2.5, 4.0, -0.05])
def test_training_is_unbiased(value: float) -> None:
    torch.manual_seed(0)
    q = StochasticQuantizer(bound=7).train()
    y = torch.full((200_000,), value)
    out = q(y)
    assert set(out.unique().tolist()) <= {float(torch.floor(y[0])), float(torch.floor(y[0]) + 1)}
    assert float(out.mean()) == pytest.approx(value, abs=0.005)


def test_straight_through_gradient() -> None:
    q = StochasticQuantizer(bound=7).train()
    y = (torch.randn(3, 4, 5, 5) * 2).requires_grad_(True)
    w = torch.randn(3, 4, 5, 5)
    (q(y) * w).sum().backward()
    assert torch.equal(y.grad, w)


def test_values_outside_the_bound_are_clamped() -> None:
    q = StochasticQuantizer(bound=3).eval()
    y = torch.tensor([-100.0, -3.4, 3.6, 100.0])
    assert q(y).tolist() == [-3.0, -3.0, 3.0, 3.0]
    assert q.to_symbols(q(y)).tolist() == [0, 0, 6, 6]


def test_eval_rounds_deterministically() -> None:
    q = StochasticQuantizer(bound=7).eval()
    y = torch.tensor([0.4, 0.6, -1.2, -2.6, 6.9])
    assert q(y).tolist() == [0.0, 1.0, -1.0, -3.0, 7.0]
    assert torch.equal(q(y), q(y))


def test_alphabet_and_symbols() -> None:
    q = StochasticQuantizer(bound=15)
    assert q.alphabet_size == 31
    assert q.to_symbols(torch.tensor([-15.0, 0.0, 15.0])).tolist() == [0, 15, 30]
    assert q.from_symbols(torch.tensor([0, 15, 30])).tolist() == [-15.0, 0.0, 15.0]
    assert q.from_symbols(torch.tensor([1])).dtype == torch.float32


@pytest.mark.parametrize("bound", [0, -1, 32768])
def test_bound_is_checked(bound: int) -> None:
    with pytest.raises(ConfigError, match="bound"):
        StochasticQuantizer(bound=bound)
