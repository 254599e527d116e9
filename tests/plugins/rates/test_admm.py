"""ADMM rate: the projection and U step, the schedule, and masks on every grid."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from codec_lab.corelib.contracts import RateOutput, TrainContext
from codec_lab.corelib.errors import ConfigError
from codec_lab.corelib.testing import setup_rate
from codec_lab.plugins.quantizers.stochastic import StochasticQuantizer
from codec_lab.plugins.rates.admm import ADMMRate
from codec_lab.registry.compose import build_codec
from tests.conftest import tiny_config
from tests.helpers import image_tensor


def _rate(**kw) -> ADMMRate:
    rate = ADMMRate(**{"cell": 32, "grid": "periodic", **kw})  # template-position semantics
    setup_rate(rate, 15, 4, 8)  # template (4, 4, 4)
    return rate


def _feed(rate: ADMMRate, codes: list[torch.Tensor]) -> None:
    for code in codes:
        rate.on_batch_end(TrainContext(), RateOutput(code, torch.zeros(()), []))


def test_projection_keeps_exactly_the_l_largest_and_updates_u() -> None:
    gen = torch.Generator().manual_seed(0)
    rate = _rate(keep=0.25)
    rate.U.copy_(torch.randn(4, 4, 4, generator=gen) * 0.1)
    u0 = rate.U.clone()
    codes = [torch.randn(2, 4, 8, 12, generator=gen) * 3 for _ in range(3)]
    _feed(rate, codes)
    rate.admm_step()
    # A: mean over batches, images and 4x4 cells of the 8x12 latents
    a = torch.stack([c.reshape(2, 4, 2, 4, 3, 4).mean(dim=(0, 2, 4)) for c in codes]).mean(0)
    v = a + u0
    n_keep = round(0.25 * v.numel())
    assert int(rate.template.sum()) == n_keep == 16
    kept, dropped = v.abs()[rate.template], v.abs()[~rate.template]
    assert float(kept.min()) > float(dropped.max())
    assert torch.allclose(rate.Z, torch.where(rate.template, v, torch.zeros_like(v)), atol=1e-6)
    assert torch.count_nonzero(rate.Z) == n_keep
    assert torch.allclose(rate.U, u0 + a - rate.Z, atol=1e-6)
    assert torch.allclose(rate.U[rate.template], torch.zeros(n_keep), atol=1e-6)  # U = V - Z
    assert bool(rate.projected)
    # the accumulator is reset: a second step without data changes nothing
    z = rate.Z.clone()
    rate.admm_step()
    assert torch.equal(rate.Z, z)


def test_step_without_data_does_nothing() -> None:
    rate = _rate()
    rate.admm_step()
    assert not bool(rate.projected) and rate.mask((4, 4)) is None


def test_small_latents_are_covered_not_folded() -> None:
    rate = _rate(keep=1.0)
    code = torch.randn(3, 4, 2, 2)
    _feed(rate, [code])
    rate.admm_step()
    assert torch.allclose(rate.Z, code.mean(0).repeat(1, 2, 2))


def test_rate_loss_is_the_augmented_lagrangian_penalty() -> None:
    rate = _rate(rho=0.3)
    gen = torch.Generator().manual_seed(1)
    rate.Z.copy_(torch.randn(4, 4, 4, generator=gen))
    rate.U.copy_(torch.randn(4, 4, 4, generator=gen))
    y = torch.randn(2, 4, 6, 5, generator=gen)
    out = rate.train()(y, {"y": y}, StochasticQuantizer(7))
    target = (rate.Z - rate.U).repeat(1, 2, 2)[:, :6, :5]
    expected = 0.3 / 2 * ((y - target) ** 2).flatten(1).sum(1).mean()
    assert torch.allclose(out.rate_loss, expected)
    assert float(_rate(rho=0.0).train()(y, {"y": y}, StochasticQuantizer(7)).rate_loss) == 0


def test_schedule_steps_every_n_epochs_then_freezes() -> None:
    rate = _rate(every=3, finetune=0.2)
    ctx = TrainContext(total_epochs=10)
    rate.on_train_start(ctx)
    events, frozen_at = [], None
    for epoch in range(10):
        ctx.epoch = epoch
        rate.train()
        _feed(rate, [torch.randn(2, 4, 4, 4)])
        ctx.log = {}
        rate.on_epoch_end(ctx)
        events.append(ctx.log.get("admm_step"))
        if frozen_at is None and bool(rate.frozen):
            frozen_at = epoch + 1
    assert events == [None, None, 3, None, None, 6, None, 8, None, None]
    assert frozen_at == 8
    y = torch.randn(1, 4, 4, 4)
    out = rate.train()(y, {"y": y}, StochasticQuantizer(7))
    assert float(out.rate_loss) == 0 and out.info["kept"] < 1, "frozen: masked and no penalty"


def test_train_end_projects_when_no_step_happened() -> None:
    rate = _rate(every=100)
    rate.on_train_start(TrainContext(total_epochs=1))
    _feed(rate, [torch.randn(2, 4, 4, 4)])
    rate.on_train_end(TrainContext(total_epochs=1))
    assert bool(rate.projected) and bool(rate.frozen)


def test_mask_only_in_eval_until_frozen() -> None:
    rate = _rate(keep=0.5)
    _feed(rate, [torch.randn(2, 4, 4, 4)])
    rate.admm_step()
    q = StochasticQuantizer(7)
    y = torch.randn(1, 4, 4, 4) * 3
    assert rate.train()(y, {"y": y}, q).info["kept"] == 1.0
    out = rate.eval()(y, {"y": y}, q)
    assert out.info["kept"] == 0.5
    assert torch.equal(out.y_hat, torch.where(rate.template, y, torch.zeros_like(y)))


def test_periodic_mask_repeats_the_template() -> None:
    rate = _rate(keep=0.3)
    _feed(rate, [torch.randn(2, 4, 4, 4)])
    rate.admm_step()
    m = rate.mask((7, 10))
    assert m.shape == (4, 7, 10)
    for i in range(7):
        for j in range(10):
            assert torch.equal(m[:, i, j], rate.template[:, i % 4, j % 4])


def test_channel_mask_keeps_whole_channels() -> None:
    rate = _rate(keep=0.375, grid="channel")  # 24 entries: channel 1 (16) and half of 3 (8)
    z = torch.zeros(4, 4, 4)
    z[1] = 5.0
    z[3, :2] = 4.0
    _feed(rate, [z[None]])
    rate.admm_step()
    m = rate.mask((5, 3))
    assert m.shape == (4, 5, 3)
    assert [bool(m[c].all()) for c in range(4)] == [False, True, False, True]
    assert not m[0].any() and not m[2].any()


@pytest.mark.parametrize(("kw", "match"), [({"keep": 0.0}, "keep"), ({"keep": 1.5}, "keep"),
                                           ({"rho": -1.0}, "rho"), ({"every": 0}, "every"),
                                           ({"finetune": 1.0}, "finetune")])  # fmt: skip
def test_bad_params(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ADMMRate(**kw)


def test_cell_must_fit_the_encoder_and_alphabet_must_be_finite() -> None:
    with pytest.raises(ConfigError, match="cell 36 is not a multiple"):
        setup_rate(ADMMRate(cell=36), 15, 4, 8)
    with pytest.raises(ConfigError, match="finite alphabet"):
        setup_rate(ADMMRate(cell=32), None, 4, 8)


# ---------------------------------------------------------------- masks through the whole codec
def _projected_codec(registry, grid: str):
    model = tiny_config(registry, rate={"name": "admm", "cell": 32, "keep": 0.3, "grid": grid})["model"]
    torch.manual_seed(0)
    codec = build_codec(model, registry)
    gen = torch.Generator().manual_seed(7)
    _feed(codec.rate, [torch.randn(2, 4, 4, 4, generator=gen) * 3])
    codec.rate.admm_step()
    codec.rate.frozen.fill_(True)
    return codec.eval()


@pytest.mark.parametrize("grid", ["periodic", "tile", "channel"])
@pytest.mark.parametrize("hw", [(50, 37), (64, 96)])
def test_forward_mask_equals_decode_mask(registry, grid: str, hw: tuple[int, int]) -> None:
    codec = _projected_codec(registry, grid)
    x = image_tensor(*hw, seed=4)
    stream = codec.streams(x)[0]
    latent_hw = tuple(stream.symbols.shape[-2:])
    decoded = codec.rate.decode_mask(codec.specs[0], {}, latent_hw)
    assert decoded is not None
    assert torch.equal(decoded.expand_as(stream.symbols[0]), stream.full_mask()[0])
    assert not decoded.all() and decoded.any()
    # and the whole round trip is exact
    enc = codec.compress(x)
    with torch.no_grad():
        ref = codec(codec.pad(x))["x_hat"].clamp(0, 1)[..., : hw[0], : hw[1]]
    assert torch.equal(codec.decompress(**enc)["x_hat"], ref)


def test_tile_grid_codes_independent_tiles(registry) -> None:
    codec = _projected_codec(registry, "tile")
    assert codec.downsampling_factor == 32 and codec.rate.tile_size == 32
    x = image_tensor(32, 64, seed=2)
    both = codec.streams(x)[0].symbols
    left = codec.streams(x[..., :32])[0].symbols
    right = codec.streams(x[..., 32:])[0].symbols
    assert torch.equal(both, torch.cat([left, right], -1))
    with torch.no_grad():
        y_hat = codec(x)["rate"].y_hat
        assert torch.equal(codec.synthesis(y_hat)[..., :32], codec.decoder(y_hat[..., :4]))


def test_extra_state_info(registry) -> None:
    codec = _projected_codec(registry, "periodic")
    info = codec.rate.extra_state_info()
    assert info == {"template_kept": pytest.approx(0.3, abs=0.02), "grid": "periodic", "projected": True}
    assert copy.deepcopy(codec.rate.state_dict())["template"].dtype == torch.bool


def test_admm_composes_with_the_gdn_transforms(registry) -> None:
    """The ADMM rate on CompressAI's transforms (16× downsampling, a 2×2 latent template cell)."""
    from codec_lab.corelib.contracts import TrainContext
    from codec_lab.registry.compose import build_codec as build
    from tests.helpers import image_tensor as img

    gdn = {"name": "gdn", "channels": 8, "latent_channels": 6}
    model = {"encoder": gdn, "quantizer": {"name": "stochastic", "bound": 7},
             "rate": {"name": "admm", "cell": 32, "keep": 0.5}, "coder": {"name": "histogram"},
             "decoder": gdn}  # fmt: skip
    torch.manual_seed(0)
    codec = build(model, registry)
    x = img(64, 80, seed=7)
    codec.train()
    codec.rate.on_batch_end(TrainContext(), codec(x)["rate"])
    codec.rate.admm_step()  # project: the template now masks
    codec.eval()
    enc = codec.compress(x)
    with torch.no_grad():
        ref = codec(x)["x_hat"].clamp(0, 1)
    assert torch.equal(codec.decompress(**enc)["x_hat"], ref)
    assert codec.rate.extra_state_info()["projected"]


def test_a_column_outside_its_declared_bounds_breaks_the_contract() -> None:
    """admm's fractions declare (0, 1): the contract rule holds a rate to them."""
    from codec_lab.corelib.testing import ContractViolation, check_rate

    class Overflowing(ADMMRate):
        def forward(self, y_tilde, features, quantizer):  # type: ignore[no-untyped-def]
            out = super().forward(y_tilde, features, quantizer)
            return dataclasses.replace(out, info={**out.info, "kept": 1.5})

    check_rate(ADMMRate(cell=32), StochasticQuantizer(bound=3))
    with pytest.raises(ContractViolation, match=r"outside the column's declared bounds \[0, 1\]"):
        check_rate(Overflowing(cell=32), StochasticQuantizer(bound=3))
