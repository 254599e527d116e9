"""The component life cycle, the conditioned coder contract and the coder-fitting stage."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from codec_lab.corelib.checkpoint import load_checkpoint
from codec_lab.corelib.coder_fit import CoderFitter
from codec_lab.corelib.config import TrainConfig
from codec_lab.corelib.data import CropSampler
from codec_lab.corelib.testing import check_coder
from codec_lab.corelib.training import Trainer
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec
from codec_lab.registry.manager import make_plugin_manager
from tests.contract.checks import SMALL_PARAMS
from tests.helpers import image_tensor
from tests.plugins.coders import tiny_context
from tests.plugins.coders.tiny_context import TinyContextCoder


@pytest.fixture(scope="module")
def reg() -> Registry:
    pm = make_plugin_manager(entry_points=False, extra=())
    pm.register(tiny_context, name="tests.tiny_context")
    return Registry(pm)


def _small_config(reg: Registry, rate: str, **components: str) -> dict:
    chosen = {**reg.get("rate", rate).cls.default_components, **components, "rate": rate}
    sets = {"model": {kind: dict(p) for (kind, name), p in SMALL_PARAMS.items() if chosen.get(kind) == name}}
    return assemble_config(reg, rate=rate, components=components, sets=sets,
                           train={"batch_size": 2, "crop": 48, "device": "cpu", "loss": "mse"})  # fmt: skip


# ---------------------------------------------------------------- life cycle
COMPOSITIONS = [
    ("admm", {}), ("importance", {}), ("entropy", {}),
    ("admm", {"encoder": "gdn", "decoder": "gdn"}),
    ("entropy", {"encoder": "cae", "decoder": "cae"}),
    ("entropy", {"quantizer": "stochastic", "coder": "histogram"}),
    ("importance", {"coder": "tiny-context"}),
    ("admm", {"coder": "tiny-context"}),
]  # fmt: skip


@pytest.mark.parametrize(("rate", "components"), COMPOSITIONS,
                         ids=[f"{r}-{'-'.join(c.values()) or 'defaults'}" for r, c in COMPOSITIONS])
def test_a_fresh_codec_loads_any_state_dict_of_its_composition(reg: Registry, rate: str,
                                                               components: dict) -> None:  # fmt: skip
    """Everything a component owns exists after set-up: no buffer appears on first use."""
    model = _small_config(reg, rate, **components)["model"]
    torch.manual_seed(0)
    a = build_codec(model, reg).eval()
    x = image_tensor(32, 40, seed=1)
    a.decompress(**a.compress(x))  # coding builds tables, if any
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.01)
    a.update(force=True)
    b = build_codec(model, reg)
    assert list(b.state_dict()) == list(a.state_dict())
    b.load_state_dict(a.state_dict())  # strict
    assert b.weights_digest() == a.weights_digest()


def test_each_component_is_set_up_exactly_once(reg: Registry, monkeypatch) -> None:
    from codec_lab.corelib.contracts import Component

    calls: list[str] = []
    original = {cls: cls.setup for cls in {type(p) for p in build_codec(
        _small_config(reg, "importance")["model"], reg).parts.values()}}  # fmt: skip
    for cls, fn in original.items():
        def spy(self, ctx, _fn=fn):
            calls.append(self.kind)
            assert isinstance(self, Component) and ctx.latent_channels == 4
            return _fn(self, ctx)

        monkeypatch.setattr(cls, "setup", spy)
    codec = build_codec(_small_config(reg, "importance")["model"], reg)
    assert sorted(calls) == sorted(["encoder", "quantizer", "rate", "coder", "decoder"])
    assert codec.rate.specs == tuple(codec.specs) and [s.name for s in codec.specs] == ["map", "y"]


def test_streams_come_from_the_declared_specs(reg: Registry) -> None:
    for rate in ("admm", "importance", "entropy"):
        codec = build_codec(_small_config(reg, rate)["model"], reg).eval()
        streams = codec.streams(image_tensor(32, 40))
        assert all(s.spec is d for s, d in zip(streams, codec.specs, strict=True))


# ---------------------------------------------------------------- conditioned, trained coder
def test_the_tiny_context_coder_keeps_the_contract() -> None:
    check_coder(TinyContextCoder)


def test_a_conditioned_coder_decodes_with_the_side_stream_it_was_coded_with(reg: Registry) -> None:
    codec = build_codec(_small_config(reg, "importance", coder="tiny-context")["model"], reg).eval()
    with torch.no_grad():
        for p in codec.coder.parameters():
            p.copy_(torch.randn_like(p))  # two very different states
    x = image_tensor(40, 48, seed=2)
    enc = codec.compress(x)
    with torch.no_grad():
        ref = codec(x)["x_hat"].clamp(0, 1)
    assert torch.equal(codec.decompress(**enc)["x_hat"], ref)
    # the code stream depends on its context: coded without it, the bytes differ
    streams = codec.streams(x)
    one = lambda s: type(s)(s.spec, s.symbols[0], None if s.mask is None else s.full_mask()[0])  # noqa: E731
    with_ctx = codec.coder.encode(one(streams[1]), {"map": one(streams[0])})
    assert with_ctx == enc["strings"][1][0]
    assert codec.coder.encode(one(streams[1]), {}) != with_ctx


def _trainer(reg: Registry, data_dirs, tmp_path: Path, **train) -> Trainer:
    cfg = _small_config(reg, "importance", coder="tiny-context")
    cfg["train"].update({"epochs": 1, "steps_per_epoch": 2, **train})
    torch.manual_seed(0)
    codec = build_codec(cfg["model"], reg)
    paths = sorted(data_dirs["train"].iterdir())
    return Trainer(codec, TrainConfig(**cfg["train"]), CropSampler(paths, 48, seed=0), paths, tmp_path)


def test_a_trained_coder_gets_its_own_stage(reg: Registry, data_dirs, tmp_path: Path) -> None:
    trainer = _trainer(reg, data_dirs, tmp_path, coder_steps=12, coder_lr=0.05)
    before = [p.detach().clone() for p in trainer.codec.coder.parameters()]
    transform = {k: v.clone() for k, v in trainer.codec.state_dict().items() if not k.startswith("coder.")}
    result = trainer.run()
    assert result.fit_steps == 12 and result.fit_images == 0
    after = list(trainer.codec.coder.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    # the stage trains the coder only: the transform is what training left
    trained = {k: v for k, v in trainer.codec.state_dict().items() if not k.startswith("coder.")}
    assert trained.keys() == transform.keys()
    with (tmp_path / "coder_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows][-1] == 12 and float(rows[-1]["loss"]) < float(rows[0]["loss"])
    # a build keeps the coder stage in its one checkpoint, with what resuming it needs
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["stage"] == "fitted" and not (tmp_path / "coder_checkpoint.pt").exists()
    assert {"optimizer", "sampler", "rng"} <= set(ckpt["fit"]) and ckpt["fit"]["step"] == 12
    x = image_tensor(40, 48, seed=3)
    codec = trainer.codec.eval()
    with torch.no_grad():
        ref = codec(x)["x_hat"].clamp(0, 1)
    assert torch.equal(codec.decompress(**codec.compress(x))["x_hat"], ref)


def test_steps_cap_the_trained_coder_stage(reg: Registry, data_dirs, tmp_path: Path) -> None:
    trainer = _trainer(reg, data_dirs, tmp_path, steps=2)
    assert trainer.fitter.plan_steps() == 2  # the coder's default (20) capped by --steps
    assert "training the tiny-context coder, 2 steps" in trainer.fitter.describe()


def test_fitting_none_and_switched_off_stages_do_nothing(reg: Registry, data_dirs, tmp_path: Path) -> None:
    trainer = _trainer(reg, data_dirs, tmp_path, fit_coder=False)
    assert not trainer.fits_coder and trainer.fitter.run().steps == 0
    entropy = build_codec(_small_config(reg, "entropy")["model"], reg)
    fitter = CoderFitter(entropy, TrainConfig(), sorted(data_dirs["train"].iterdir()))
    assert fitter.fitting == "none" and fitter.run().fitting == "none"


@pytest.mark.parametrize("fit", ["counted", "trained"])
def test_every_stage_is_described(reg: Registry, data_dirs, fit: str) -> None:
    coder = {"counted": "histogram", "trained": "tiny-context"}[fit]
    codec = build_codec(_small_config(reg, "admm", coder=coder)["model"], reg)
    fitter = CoderFitter(codec, TrainConfig(steps=5), sorted(data_dirs["train"].iterdir()), train_steps=5)
    assert fitter.fitting == fit and coder in fitter.describe()

