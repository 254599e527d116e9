"""The plugin's own tests: codec-lab's contract checks, plus what is particular to it.

Run with ``pytest examples/l1-laplace/tests`` once the package is installed.
"""

from __future__ import annotations

import pytest
import torch
from codec_l1_laplace import L1SparsityRate, LaplaceStaticCoder
from codec_l1_laplace.coder import PRECISION, laplace_pmf

from codec_lab.contracts import Stream, StreamSpec
from codec_lab.registry.components import Registry
from codec_lab.registry.manager import make_plugin_manager
from codec_lab.testing import (
    CODER_SPECS,
    builtin,
    check_coder,
    check_info,
    check_rate,
    check_state_dict_round_trip,
    setup_coder,
    setup_rate,
)


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The built-ins plus this package, named explicitly (whatever else is installed)."""
    return Registry(make_plugin_manager(entry_points=False, extra=("codec_l1_laplace",)))


def stochastic(registry: Registry, bound: int = 7):
    """The built-in ``stochastic`` quantizer (``registry.get(kind, name).cls(...)`` does the same)."""
    return builtin("quantizer", "stochastic", bound=bound)


def test_registered_with_valid_metadata(registry: Registry) -> None:
    check_info(registry.get("rate", "l1-sparsity"))
    check_info(registry.get("coder", "laplace-static"))
    assert registry.get("rate", "l1-sparsity").cls.default_components["coder"] == "laplace-static"


@pytest.mark.parametrize("drop_below", [0.0, 1e6])  # every channel sent / all but one dropped
def test_rate_keeps_the_contract(registry: Registry, drop_below: float) -> None:
    check_rate(L1SparsityRate(drop_below=drop_below), stochastic(registry))


def test_rate_drops_quiet_channels_after_training(registry: Registry) -> None:
    rate, q = L1SparsityRate(drop_below=1e6), stochastic(registry)
    check_rate(rate, q, latent_channels=4)
    assert int(rate.keep.sum()) == 1  # the loudest channel is always sent
    assert rate.decode_mask(rate.spec("y"), {}, (3, 5)).shape == (4, 1, 1)  # broadcast


def test_rate_loss_is_the_weighted_l1_per_pixel(registry: Registry) -> None:
    rate, q = L1SparsityRate(weight=2.0), stochastic(registry)
    setup_rate(rate, q, latent_channels=4, factor=8)
    rate.eval()
    y = q(torch.randn(2, 4, 3, 5) * 3)
    out = rate(y, {"y": y}, q)
    assert torch.allclose(out.rate_loss, 2.0 * y.abs().sum() / (2 * 3 * 5 * 64))
    assert 0 <= out.info["zeros"] <= 1 and out.info["kept"] == 1.0


def test_rate_state_dict_round_trips(registry: Registry) -> None:
    def make() -> L1SparsityRate:
        rate = L1SparsityRate()
        setup_rate(rate, stochastic(registry), latent_channels=4)
        return rate

    check_state_dict_round_trip(make)


def test_coder_keeps_the_contract() -> None:
    check_coder(LaplaceStaticCoder)


def test_coder_state_dict_round_trips() -> None:
    def make() -> LaplaceStaticCoder:
        coder = LaplaceStaticCoder()
        setup_coder(coder, CODER_SPECS)
        return coder

    check_state_dict_round_trip(make)


def test_coder_fits_the_median_and_mean_deviation() -> None:
    spec = StreamSpec("y", 2, 31)
    coder = LaplaceStaticCoder()
    setup_coder(coder, [spec])
    torch.manual_seed(0)
    lap = torch.distributions.Laplace(torch.tensor([15.0, 9.0]), torch.tensor([1.5, 3.0]))
    sample = lap.sample((4000,)).round().clamp(0, 30).long().T  # (2, 4000)
    coder.fit_begin()
    coder.fit_observe([Stream(spec, sample.reshape(1, 2, 40, 100))])
    coder.fit_end()
    model = coder.models["y"]
    assert model.loc.tolist() == [15.0, 9.0]
    assert torch.allclose(model.scale, torch.tensor([1.5, 3.0], dtype=torch.float64), rtol=0.1)
    assert coder.fitted and int(model.freq.sum(1).unique()) == 1 << PRECISION


def test_pmf_sums_to_one_with_the_tails_folded_in() -> None:
    p = laplace_pmf(torch.tensor([0.0, 7.0, 14.0], dtype=torch.float64),
                    torch.tensor([0.05, 2.0, 40.0], dtype=torch.float64), 15)  # fmt: skip
    assert torch.allclose(p.sum(1), torch.ones(3, dtype=torch.float64))
    assert p[0, 0] > 0.99 and p[1].argmax() == 7 and p[2, -1] > p[2, 0]
