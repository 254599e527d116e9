"""Learned multi-valued quantizer (TPAMI MLQuant) and the CVPR binarizer."""

from __future__ import annotations

import math

import pytest
import torch

from codec_lab.corelib.errors import ConfigError
from codec_lab.corelib.testing import check_quantizer
from codec_lab.plugins.quantizers.multilevel import BinaryQuantizer, MultilevelQuantizer
from codec_lab.plugins.transforms.cae import CAEEncoder
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import build_codec


def _two_clusters(gen: torch.Generator, n: int = 2, c: int = 2, size: int = 16) -> torch.Tensor:
    """Latents in (0, 1) concentrated near 0.2 and 0.8."""
    pick = torch.rand(n, c, size, size, generator=gen) < 0.5
    noise = 0.03 * torch.randn(n, c, size, size, generator=gen)
    return (torch.where(pick, 0.2, 0.8) + noise).clamp(0.001, 0.999)


def _mse(q: MultilevelQuantizer, x: torch.Tensor) -> float:
    q.eval()
    with torch.no_grad():
        return float((q(x) - x).pow(2).mean())


# ---------------------------------------------------------------------------- multilevel
def test_initial_levels_are_mid_points() -> None:
    q = MultilevelQuantizer(levels=8, latent_channels=3)
    want = torch.tensor([(2 * j + 1) / 16 for j in range(8)])
    assert torch.allclose(q.level_values(), want.expand(3, 8), atol=1e-6)
    assert q.alphabet_size == 8


def test_levels_are_buffers_not_parameters() -> None:
    q = MultilevelQuantizer(latent_channels=4)
    assert list(q.parameters()) == []
    assert {"theta", "counts", "steps"} <= set(q.state_dict())
    assert q.state_dict()["theta"].shape == (4, 8)


def test_nearest_level_with_ties_going_up() -> None:
    q = MultilevelQuantizer(levels=4, latent_channels=1).eval()  # levels 1/8, 3/8, 5/8, 7/8
    x = torch.tensor([-3.0, 0.1, 0.25, 0.26, 0.5, 0.74, 0.9, 5.0]).view(1, 1, 1, -1)
    assert q.to_symbols(q(x)).flatten().tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert q(x).flatten().tolist() == [0.125, 0.125, 0.375, 0.375, 0.625, 0.625, 0.875, 0.875]


def test_eval_round_trip_is_bit_exact_per_channel() -> None:
    gen = torch.Generator().manual_seed(0)
    q = MultilevelQuantizer(levels=8, latent_channels=4, level_lr=0.5).train()
    for _ in range(50):  # learned, irregular levels that differ by channel
        q(torch.rand(2, 4, 8, 8, generator=gen) ** 2)
    q.eval()
    x = torch.rand(3, 4, 9, 7, generator=gen)
    hard = q(x)
    sym = q.to_symbols(hard)
    assert sym.dtype == torch.int64 and int(sym.min()) >= 0 and int(sym.max()) < 8
    assert torch.equal(q.from_symbols(sym), hard)
    assert torch.equal(q.quantize(x), sym)
    # a rate hands over one image's (C, h, w) symbols
    assert torch.equal(q.from_symbols(sym[1]), hard[1])
    # every level of every channel maps back to its own index
    every = torch.arange(8).view(1, 8, 1).expand(4, 8, 1)
    assert torch.equal(q.to_symbols(q.from_symbols(every)), every)


def test_training_value_is_exactly_a_level() -> None:
    gen = torch.Generator().manual_seed(1)
    q = MultilevelQuantizer(levels=8, latent_channels=2, level_lr=0.0).train()
    x = torch.rand(2, 2, 5, 5, generator=gen).requires_grad_(True)
    out = q(x)
    q.eval()
    assert torch.equal(out.detach(), q(x.detach()))


def test_straight_through_gradient() -> None:
    gen = torch.Generator().manual_seed(2)
    q = MultilevelQuantizer(levels=8, latent_channels=4).train()
    x = torch.rand(3, 4, 5, 5, generator=gen).requires_grad_(True)
    w = torch.randn(3, 4, 5, 5, generator=gen)
    (q(x) * w).sum().backward()
    assert torch.equal(x.grad, w)


def test_levels_stay_monotone_on_skewed_data() -> None:
    gen = torch.Generator().manual_seed(3)
    q = MultilevelQuantizer(levels=16, latent_channels=3, level_lr=1.0, repair_every=50).train()
    for _ in range(400):
        # most mass near 0, a little near 1, channel 2 nearly constant
        x = torch.rand(2, 3, 8, 8, generator=gen) ** torch.tensor([6.0, 2.0, 30.0]).view(1, 3, 1, 1)
        q(x)
    levels = q.level_values()
    assert torch.isfinite(levels).all()
    assert (levels.diff(dim=1) > 0).all()


def test_quantization_error_drops_as_levels_learn() -> None:
    gen = torch.Generator().manual_seed(4)
    q = MultilevelQuantizer(levels=4, latent_channels=2, level_lr=0.5)
    held_out = _two_clusters(gen, n=4)
    before = _mse(q, held_out)
    q.train()
    for _ in range(300):
        q(_two_clusters(gen))
    after = _mse(q, held_out)
    assert after < before / 4
    levels = q.level_values()
    assert ((levels - 0.2).abs().min(dim=1).values < 0.02).all()
    assert ((levels - 0.8).abs().min(dim=1).values < 0.02).all()


def test_level_gradient_matches_autograd() -> None:
    """The hand-written step is SGD on the mean of ½(y - x)² over each channel's elements."""
    gen = torch.Generator().manual_seed(5)
    q = MultilevelQuantizer(levels=6, latent_channels=3, level_lr=0.1, repair_every=10**6)
    theta0 = q.theta.clone()
    x = torch.rand(2, 3, 4, 4, generator=gen)
    with torch.no_grad():
        k = q.train().to_symbols(x)
    q.train()(x)
    theta = theta0.clone().requires_grad_(True)
    levels = torch.cat([theta[:, :1], theta[:, 1:].exp()], dim=1).cumsum(1)  # (C, L)
    y = levels[torch.arange(3).view(1, 3, 1, 1), k]
    (0.5 * (y - x).pow(2)).mean(dim=(0, 2, 3)).sum().backward()
    assert torch.allclose(q.theta, theta0 - 0.1 * theta.grad, atol=1e-6)


def test_counts_and_steps_track_usage() -> None:
    q = MultilevelQuantizer(levels=4, latent_channels=1, decay=0.5).train()
    q(torch.full((1, 1, 2, 2), 0.1))  # 4 elements at level 0
    q(torch.full((1, 1, 1, 2), 0.9))  # 2 at level 3
    assert q.counts[0].tolist() == pytest.approx([2.0, 0.0, 0.0, 2.0])
    assert int(q.steps) == 2
    q.eval()(torch.rand(1, 1, 3, 3))
    assert int(q.steps) == 2, "eval forwards must not learn"


def test_repair_pulls_unused_top_levels_into_the_data() -> None:
    gen = torch.Generator().manual_seed(6)
    q = MultilevelQuantizer(levels=8, latent_channels=2, level_lr=0.0, repair_every=20)
    with torch.no_grad():  # levels 4..7 far above every value in (0, 1)
        q.theta[:, 4:] = math.log(5.0)
    assert (q.level_values()[:, 4:] > 5).all()
    q.train()
    for i in range(20):
        q(torch.rand(2, 2, 8, 8, generator=gen))
        if i < 19:
            assert (q.level_values()[:, 4:] > 5).all(), "repaired before repair_every forwards"
    levels = q.level_values()
    assert (levels[:, -1] <= 1.0).all() and (levels.diff(dim=1) > 0).all()
    # the top level now sits where the highest used level was (7/16), the spare ones below it
    assert torch.allclose(levels[:, -1], torch.tensor(7 / 16), atol=1e-5)
    q.counts.zero_()
    for _ in range(20):
        q(torch.rand(2, 2, 8, 8, generator=gen))
    assert (q.counts[:, 4:] > 0).all(), "repaired levels are used again"


def test_repair_revives_an_unused_level_zero() -> None:
    gen = torch.Generator().manual_seed(7)
    q = MultilevelQuantizer(levels=4, latent_channels=1, level_lr=0.0, repair_every=5)
    with torch.no_grad():
        q.theta[0, 0] = -3.0  # levels -3, 0, 1/8, 1/4: all of the data is at level 3
        q.theta[0, 1] = math.log(3.0)
    old = q.level_values()[0].clone()
    q.train()
    for _ in range(5):
        q(0.5 + 0.5 * torch.rand(1, 1, 8, 8, generator=gen))
    new = q.level_values()[0]
    assert float(new[0]) == pytest.approx(float(old[1]), abs=1e-5), "q_0 moves up to q_1"
    assert (new.diff() > 0).all()


def test_repair_with_two_levels() -> None:
    q = MultilevelQuantizer(levels=2, latent_channels=1, level_lr=0.0, repair_every=1).train()
    q(torch.full((1, 1, 2, 2), 0.9))  # level 0 never used
    levels = q.level_values()[0]
    assert torch.isfinite(levels).all() and float(levels[0]) == pytest.approx(0.75)


def test_state_dict_round_trip_keeps_learned_levels() -> None:
    gen = torch.Generator().manual_seed(8)
    a = MultilevelQuantizer(levels=8, latent_channels=2, level_lr=0.5).train()
    for _ in range(30):
        a(torch.rand(2, 2, 8, 8, generator=gen) ** 3)
    b = MultilevelQuantizer(levels=8, latent_channels=2, level_lr=0.5)
    b.load_state_dict(a.state_dict())
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    x = torch.rand(1, 2, 6, 6, generator=gen)
    assert torch.equal(a.eval()(x), b.eval()(x))
    assert int(b.steps) == 30


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"levels": 1}, r"levels must be in \[2, 256\]"),
        ({"levels": 257}, r"levels must be in \[2, 256\]"),
        ({"latent_channels": 0}, "latent_channels"),
        ({"level_lr": -0.1}, "level_lr"),
        ({"level_lr": float("nan")}, "level_lr"),
        ({"repair_every": 0}, "repair_every"),
        ({"decay": 0.0}, "decay"),
        ({"decay": 1.5}, "decay"),
    ],
)
def test_bad_params_are_refused(params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MultilevelQuantizer(**params)


def test_wrong_channel_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected 4 channels"):
        MultilevelQuantizer(latent_channels=4)(torch.rand(1, 3, 2, 2))


def test_check_composition_names_the_channel_mismatch() -> None:
    enc = CAEEncoder(channels=8, blocks=0, latent_channels=4)
    assert MultilevelQuantizer(latent_channels=4).check_composition({"encoder": enc}) is None
    msg = MultilevelQuantizer(latent_channels=32).check_composition({"encoder": enc})
    assert msg is not None and "latent_channels=32" in msg and "4" in msg


def test_the_builder_sets_latent_channels_from_the_encoder() -> None:
    small = {"channels": 8, "blocks": 0, "latent_channels": 4}
    model = {"encoder": {"name": "cae", **small}, "decoder": {"name": "cae", **small},
             "quantizer": {"name": "multilevel", "latent_channels": 8}, "rate": {"name": "admm", "cell": 32},
             "coder": {"name": "histogram"}}  # fmt: skip
    codec = build_codec(model, Registry())
    assert codec.quantizer.channels == 4 and codec.config["quantizer"]["latent_channels"] == 4


def test_extra_state_info() -> None:
    info = MultilevelQuantizer(levels=4, latent_channels=2).extra_state_info()
    assert info == {"level_steps": 0, "level_min": 0.125, "level_max": 0.875}


def test_multilevel_passes_the_contract_check() -> None:
    torch.manual_seed(0)
    check_quantizer(MultilevelQuantizer(levels=8, latent_channels=4))
    check_quantizer(MultilevelQuantizer(levels=256, latent_channels=4))


# ---------------------------------------------------------------------------- binary
def test_binary_thresholds_in_training_and_eval() -> None:
    x = torch.tensor([0.0, 0.3, 0.5, 0.51, 0.9, 1.0])
    q = BinaryQuantizer()
    assert q.eval()(x).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert q.train()(x).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert BinaryQuantizer(threshold=0.2).eval()(x).tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_binary_symbols() -> None:
    q = BinaryQuantizer().eval()
    assert q.alphabet_size == 2
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(9))
    sym = q.to_symbols(q(x))
    assert sym.dtype == torch.int64 and set(sym.unique().tolist()) <= {0, 1}
    assert torch.equal(q.from_symbols(sym), q(x))


def test_binary_straight_through_gradient() -> None:
    gen = torch.Generator().manual_seed(10)
    x = torch.rand(2, 3, 4, 4, generator=gen).requires_grad_(True)
    w = torch.randn(2, 3, 4, 4, generator=gen)
    (BinaryQuantizer().train()(x) * w).sum().backward()
    assert torch.equal(x.grad, w)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.5, 2.0])
def test_binary_threshold_is_checked(threshold: float) -> None:
    with pytest.raises(ConfigError, match=r"threshold must be in \(0, 1\)"):
        BinaryQuantizer(threshold=threshold)


def test_binary_passes_the_contract_check() -> None:
    check_quantizer(BinaryQuantizer())


def test_both_are_registered() -> None:
    names = Registry().names("quantizer")
    assert "multilevel" in names and "binary" in names
