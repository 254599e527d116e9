"""The entropy-estimator codec: gdn transforms, noise quantizer, entropy rate, factorized coder."""

from __future__ import annotations

import warnings

import pytest
import torch

from codec_lab.corelib.entropy_models import StaleTablesWarning, TrackedBottleneck, table_likelihoods
from codec_lab.corelib.errors import BitstreamError, CompositionError
from codec_lab.corelib.files import decode_bytes, encode_image
from codec_lab.plugins.quantizers.noise import NoiseQuantizer
from codec_lab.registry.compose import build_codec
from tests.helpers import image_tensor

GDN = {"name": "gdn", "channels": 8, "latent_channels": 6}
CAE = {"name": "cae", "channels": 8, "blocks": 0, "latent_channels": 4}


def _model(**over) -> dict:
    model = {"encoder": GDN, "quantizer": {"name": "noise"}, "rate": {"name": "entropy"},
             "coder": {"name": "factorized"}, "decoder": GDN}  # fmt: skip
    return {**model, **over}


def _codec(registry, **over):
    torch.manual_seed(0)
    codec = build_codec(_model(**over), registry)
    with torch.no_grad():  # a density unlike the initial one
        for p in codec.rate.bottleneck.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    codec.update(force=True)
    return codec.eval()


def test_noise_quantizer_adds_bounded_noise_in_training_and_rounds_in_eval() -> None:
    q = NoiseQuantizer()
    y = torch.randn(2, 3, 8, 8) * 4
    q.train()
    d = q(y) - y
    assert d.abs().max() <= 0.5 and d.std() > 0.2
    q.eval()
    assert torch.equal(q(y), torch.round(y))
    assert q.to_symbols(q(y)).min() < 0  # signed, unbounded


@pytest.mark.parametrize("parts", [{}, {"encoder": CAE, "decoder": CAE}], ids=["gdn", "cae"])
def test_round_trip_is_bit_exact_and_matches_forward(registry, parts) -> None:
    codec = _codec(registry, **parts)
    x = image_tensor(37, 50, seed=1)  # not a multiple of anything
    data = encode_image(codec, x)
    out = decode_bytes(codec, data)
    with torch.no_grad():
        ref = codec(x)["x_hat"].clamp(0, 1)
    assert out.shape == x.shape
    assert torch.equal(out, ref)


def test_latent_is_rounded_around_the_medians(registry) -> None:
    codec = _codec(registry)
    x = image_tensor(32, 32, seed=2)
    with torch.no_grad():
        y = codec.encoder(x)["y"]
        y_hat = codec(x)["rate"].y_hat
    m = codec.rate.bottleneck.medians().view(1, -1, 1, 1)
    assert torch.equal(y_hat, torch.round(y - m) + m)


def test_rate_loss_is_weighted_bits_per_pixel(registry) -> None:
    codec = _codec(registry)
    x = image_tensor(32, 48, seed=3)
    with torch.no_grad():
        out = codec(x)
    bits = -torch.log2(out["likelihoods"]["y"]).sum()
    assert float(out["rate_loss"]) == pytest.approx(150.0 * float(bits) / (32 * 48), rel=1e-5)


@pytest.mark.parametrize("step", [1.0, 0.5])
def test_entropy_with_a_finite_alphabet_quantizer_and_the_histogram_coder(registry, step) -> None:
    """The entropy rate on the CAE with stochastic rounding, coded by the histogram coder."""
    torch.manual_seed(0)
    q = {"name": "stochastic", "bound": 7, "step": step}
    codec = build_codec(_model(encoder=CAE, decoder=CAE, quantizer=q, coder={"name": "histogram"}),
                        registry).eval()  # fmt: skip
    with torch.no_grad():
        codec.rate.bottleneck.quantiles[:, 0, 1] = torch.linspace(-0.4, 0.3, 4)  # medians off 0
    x = image_tensor(40, 48, seed=4)
    with torch.no_grad():
        y_hat = codec(x)["rate"].y_hat
    m = codec.rate.bottleneck.medians().view(1, -1, 1, 1) * step
    units = (y_hat - m) / step
    assert torch.allclose(units, torch.round(units), atol=1e-5)  # on the grid shifted by the medians
    codec.coder.fit_begin()
    codec.coder.fit_observe(codec.streams(x))
    codec.coder.fit_end()
    enc = codec.compress(x)
    with torch.no_grad():
        ref = codec(x)["x_hat"].clamp(0, 1)
    assert torch.equal(codec.decompress(**enc)["x_hat"], ref)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"quantizer": {"name": "multilevel"}, "coder": {"name": "histogram"}}, "uniform grid"),
        ({"quantizer": {"name": "stochastic"}}, "use quantizer noise"),
        ({"rate": {"name": "admm"}, "quantizer": {"name": "stochastic"}}, "choose rate 'entropy'"),
        ({"coder": {"name": "histogram"}}, "finite alphabet"),
    ],
    ids=["learned-levels", "factorized-needs-noise", "factorized-needs-entropy", "histogram-needs-finite"],
)
def test_compositions_that_cannot_work_are_refused(registry, over, message) -> None:
    with pytest.raises(CompositionError) as e:
        build_codec(_model(**over), registry)
    assert message in str(e.value) + (e.value.hint or "")


def test_stale_tables_are_rebuilt_with_a_warning(registry) -> None:
    codec = _codec(registry)
    x = image_tensor(32, 32, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        codec.compress(x)  # fresh tables: no warning
    with torch.no_grad():
        codec.rate.bottleneck.biases[0].add_(0.3)
    with pytest.warns(StaleTablesWarning, match="update"):
        enc = codec.compress(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.isfinite(codec.decompress(**enc)["x_hat"]).all()


def test_loaded_tables_are_trusted_and_missing_ones_built(registry) -> None:
    codec = _codec(registry)
    fresh = build_codec(codec.config, registry).eval()
    fresh.load_state_dict(codec.state_dict())
    assert not fresh.rate.bottleneck.stale
    untrained = build_codec(codec.config, registry).eval()
    assert not untrained.rate.bottleneck.has_tables
    untrained.compress(image_tensor(32, 32))  # update() runs first, as CompressAI requires
    assert untrained.rate.bottleneck.has_tables


def test_table_likelihoods_price_escapes_like_the_coder() -> None:
    from codec_lab.corelib.entropy_models import encode_symbols

    eb = TrackedBottleneck(2)
    eb.update()
    sym = torch.tensor([[[0, 1, -1, 900]], [[3, -2000, 0, 5]]])  # two far outliers
    bits = float(-torch.log2(table_likelihoods(eb, sym[None]).double()).sum())
    real = 8 * len(encode_symbols(eb, sym, None))
    assert abs(real - bits) <= 64, (real, bits)


@pytest.mark.parametrize("data", [b"", b"\x00\x01\x02", b"\x00" * 6], ids=["empty", "short", "odd"])
def test_impossible_payloads_are_refused_before_the_rans_decoder(registry, data) -> None:
    codec = _codec(registry)
    enc = codec.compress(image_tensor(32, 32))
    enc["strings"] = [[data]]
    with pytest.raises(BitstreamError, match="cannot be decoded"):
        codec.decompress(**enc)


def test_nothing_sent_costs_nothing_and_decodes(registry) -> None:
    from codec_lab.corelib.entropy_models import decode_symbols, encode_symbols

    eb = TrackedBottleneck(3)
    eb.update()
    none = torch.zeros(3, 1, 1, dtype=torch.bool)
    assert encode_symbols(eb, torch.ones(3, 4, 4, dtype=torch.int64), none) == b""
    assert not decode_symbols(eb, b"", (3, 4, 4), none).any()


def test_training_engine_trains_the_quantiles_and_leaves_fresh_tables(registry, data_dirs) -> None:
    from codec_lab.corelib.config import TrainConfig
    from codec_lab.corelib.data import CropSampler
    from codec_lab.corelib.training import Trainer

    torch.manual_seed(0)
    codec = build_codec(_model(), registry)
    before = codec.rate.bottleneck.quantiles.detach().clone()
    cfg = TrainConfig(epochs=1, steps_per_epoch=3, batch_size=2, crop=48, device="cpu", loss="mse",
                      warmup_epochs=0, aux_lr=0.1)  # fmt: skip
    result = Trainer(codec, cfg, CropSampler(sorted(data_dirs["train"].iterdir()), 48)).run()
    assert result.fit_seconds < 5  # nothing to fit: the factorized coder codes with the density
    eb = codec.rate.bottleneck
    assert not torch.equal(eb.quantiles.detach(), before)
    assert eb.has_tables and not eb.stale
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        codec.compress(image_tensor(32, 32))
