"""The importance-map rate: mask rule, encoder/decoder agreement, free masked positions, schedule."""

from __future__ import annotations

import pytest
import torch

from codec_lab.corelib.contracts import TrainContext
from codec_lab.corelib.errors import BitstreamError, CompositionError, ConfigError
from codec_lab.corelib.streams import Stream
from codec_lab.corelib.testing import setup_coder, setup_rate
from codec_lab.plugins.coders.histogram import HistogramCoder
from codec_lab.plugins.quantizers.stochastic import StochasticQuantizer
from codec_lab.plugins.rates.importance import ImportanceRate, importance_mask, quantize_map


def _rate(levels: int = 4, channels: int = 8, **kw) -> ImportanceRate:
    rate = ImportanceRate(levels=levels, **kw)
    setup_rate(rate, StochasticQuantizer(), channels, 8)  # the quantizer the tests use
    return rate


def _features(b: int = 2, c: int = 8, h: int = 5, w: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"y": torch.randn(b, c, h, w, generator=gen) * 3,
            "importance": torch.rand(b, 1, h, w, generator=gen)}  # fmt: skip


def test_map_symbols_are_floor_of_l_times_p() -> None:
    p = torch.tensor([0.0, 0.2499, 0.25, 0.74, 0.999, 1.0]).view(1, 1, 1, 6)
    assert quantize_map(p, 4).flatten().tolist() == [0, 0, 1, 2, 3, 3]


def test_mask_keeps_the_first_cpl_times_q_channels() -> None:
    q = torch.tensor([0, 1, 2, 3]).view(1, 1, 4)
    m = importance_mask(q, channels=8, levels=4)  # two channels per level
    assert m.shape == (8, 1, 4)
    assert m[:, 0, :].sum(0).tolist() == [0, 2, 4, 6]
    for j, kept in enumerate([0, 2, 4, 6]):
        assert m[:kept, 0, j].all() and not m[kept:, 0, j].any()


def test_decoder_derives_the_same_mask_from_the_map() -> None:
    rate, q = _rate().eval(), StochasticQuantizer().eval()
    feats = _features()
    out = rate(q(feats["y"]), feats, q)
    map_stream, code = out.streams
    assert map_stream.spec.name == "map" and map_stream.spec.side and map_stream.mask is None
    for i in range(2):
        decoded = {"map": map_stream.symbols[i]}
        mask = rate.decode_mask(code.spec, decoded, (5, 6))
        assert torch.equal(mask, code.mask[i])
        decoded["y"] = torch.where(mask, code.symbols[i], torch.zeros_like(code.symbols[i]))
        assert torch.equal(rate.reconstruct(decoded, q, (5, 6))[0], out.y_hat[i])


def test_masked_positions_never_reach_the_coder() -> None:
    rate, q = _rate().eval(), StochasticQuantizer().eval()
    feats = _features(b=1)
    out = rate(q(feats["y"]), feats, q)
    code = out.streams[1]
    assert not code.mask.all() and code.mask.any()
    coder = HistogramCoder()
    setup_coder(coder, [s.spec for s in out.streams])
    one = Stream(code.spec, code.symbols[0], code.mask[0])
    scrambled = torch.where(code.mask[0], code.symbols[0], (code.symbols[0] + 7) % 31)
    assert coder.encode(one) == coder.encode(Stream(code.spec, scrambled, code.mask[0]))
    # …and cost nothing: the likelihood of a masked position is 1.
    lik = coder.likelihoods(Stream(code.spec, code.symbols, code.mask))
    assert torch.all(lik[~code.mask.expand_as(lik)] == 1)


def test_a_map_that_keeps_nothing_still_round_trips() -> None:
    rate, q = _rate().eval(), StochasticQuantizer().eval()
    feats = _features(b=1)
    feats["importance"] = torch.full_like(feats["importance"], 0.1)  # Q = 0 everywhere
    out = rate(q(feats["y"]), feats, q)
    assert out.info["kept"] == 0.0 and torch.count_nonzero(out.y_hat) == 0
    coder = HistogramCoder()
    setup_coder(coder, [s.spec for s in out.streams])
    decoded = {}
    for s in out.streams:
        mask = rate.decode_mask(s.spec, decoded, (5, 6))
        data = coder.encode(Stream(s.spec, s.symbols[0], None if s.mask is None else s.mask[0]))
        decoded[s.spec.name] = coder.decode(data, s.spec, (s.spec.channels, 5, 6), mask)
    assert torch.equal(decoded["map"], out.streams[0].symbols[0])
    assert torch.count_nonzero(rate.reconstruct(decoded, q, (5, 6))) == 0


def test_map_of_the_wrong_shape_is_a_decode_error() -> None:
    rate = _rate()
    code_spec = setup_rate(rate, 15, 8, 8)[1]
    with pytest.raises(BitstreamError, match="map stream"):
        rate.decode_mask(code_spec, {"map": torch.zeros(1, 4, 4, dtype=torch.long)}, (5, 6))


@pytest.mark.parametrize(("kw", "match"), [
    ({"threshold": 0.0}, r"threshold must be in \(0, 1\]"),
    ({"threshold": 1.5}, r"threshold must be in \(0, 1\]"),
    ({"levels": 1}, r"levels must be in \[2, 256\]"),
    ({"stage1": 1.0}, r"stage1 must be in \[0, 1\)"),
    ({"stage2_lr": 0.0}, r"stage2_lr"),
    ({"gamma": -1.0}, "gamma"),
])  # fmt: skip
def test_out_of_range_params_are_refused(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ImportanceRate(**kw)


def test_levels_must_divide_the_code_channels() -> None:
    with pytest.raises(ConfigError, match="valid levels for 12 channels: 2, 3, 4, 6, 12"):
        setup_rate(ImportanceRate(levels=8), 15, 12, 8)


def test_rate_loss_is_a_hinge_above_the_threshold() -> None:
    rate, q = _rate(threshold=0.5, gamma=10.0).train(), StochasticQuantizer()
    rate.stage.fill_(1)
    feats = _features(b=2)
    feats["importance"] = torch.stack([torch.full((1, 5, 6), 0.3), torch.full((1, 5, 6), 0.8)])
    out = rate(q(feats["y"]), feats, q)
    assert float(out.rate_loss) == pytest.approx(10.0 * (0.0 + 0.3) / 2, rel=1e-5)


def test_boxcar_gradient_reaches_p_only_near_the_switching_level() -> None:
    rate, q = _rate(levels=4, channels=8, threshold=1.0).train(), StochasticQuantizer()
    rate.stage.fill_(1)
    y = torch.ones(1, 8, 1, 3)
    p = torch.tensor([0.05, 0.3, 0.99]).view(1, 1, 1, 3).requires_grad_(True)
    out = rate(y, {"y": y, "importance": p}, q)
    out.y_hat.sum().backward()
    # L·p = 0.2, 1.2, 3.96: channel k switches at level k//2 + 1 ∈ {1, 2, 3, 4}.
    # Windows |L·p − switch| ≤ 1: {1} → 2 channels, {1, 2} → 4, {3, 4} → 4, times L = 4.
    assert p.grad.flatten().tolist() == pytest.approx([8.0, 16.0, 16.0])


def test_v1_gradient_pushes_p_up_by_the_masked_channels_benefit() -> None:
    rate, q = _rate(levels=4, channels=8, threshold=1.0, mask_grad="v1").train(), StochasticQuantizer()
    rate.stage.fill_(1)
    y = torch.ones(1, 8, 1, 1)
    p = torch.full((1, 1, 1, 1), 0.3, requires_grad=True)  # Q = 1: 2 channels kept, 6 masked
    out = rate(y, {"y": y, "importance": p}, q)
    (-out.y_hat).sum().backward()  # gradient −1 at every decoder input
    assert float(p.grad) == pytest.approx(-6.0)


def test_two_stage_schedule() -> None:
    rate, q = _rate(stage1=0.5, stage2_lr=0.1).train(), StochasticQuantizer().train()
    ctx = TrainContext(total_epochs=4, total_steps=8)
    rate.on_train_start(ctx)
    assert ctx.distortion_only and int(rate.stage) == 0
    feats = _features()
    out = rate(q(feats["y"]), feats, q)
    assert out.info["kept"] == 1.0 and float(out.rate_loss) == 0.0  # no mask in stage 1
    ctx.epoch = 0
    rate.on_epoch_end(ctx)
    assert ctx.distortion_only
    ctx.epoch = 1
    rate.on_epoch_end(ctx)
    assert not ctx.distortion_only and ctx.lr_scale == 0.1 and int(rate.stage) == 1
    assert ctx.log == {"importance_stage": 2}
    assert rate(q(feats["y"]), feats, q).info["kept"] < 1.0
    assert "stage" in rate.state_dict()


def test_eval_always_masks() -> None:
    rate, q = _rate().eval(), StochasticQuantizer().eval()
    assert int(rate.stage) == 0
    feats = _features()
    assert rate(q(feats["y"]), feats, q).info["kept"] < 1.0


def test_an_encoder_without_a_map_is_refused(registry) -> None:
    from codec_lab.registry.compose import assemble_config, build_codec

    cfg = assemble_config(registry, rate="importance", components={"encoder": "cae", "decoder": "cae",
                                                                   "quantizer": "stochastic"})  # fmt: skip
    with pytest.raises(CompositionError, match="needs an encoder that outputs an importance map"):
        build_codec(cfg["model"], registry)
