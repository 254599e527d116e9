"""The training engine: steps, logs, checkpoints, seeds, rate-plugin hooks, coder fitting."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.config import TrainConfig
from codec_lab.corelib.contracts import TrainContext
from codec_lab.corelib.data import CropSampler
from codec_lab.corelib.errors import ConfigError
from codec_lab.corelib.runs import torch_load_checkpoint
from codec_lab.corelib.training import LOG_FIELDS, Trainer, resolve_device
from codec_lab.plugins.coders.histogram import HistogramCoder
from codec_lab.plugins.quantizers.stochastic import StochasticQuantizer
from codec_lab.plugins.rates.admm import ADMMRate
from codec_lab.plugins.transforms.cae import CAEDecoder, CAEEncoder
from codec_lab.registry.compose import build_codec
from tests.conftest import tiny_config


class _Lines:
    """A progress that records what it is told: each stage's start and every message."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def start(self, task: str, total: int) -> None:
        self.lines.append(f"start {task} {total}")

    def advance(self, n: int = 1, **fields) -> None:
        pass

    def message(self, text: str) -> None:
        self.lines.append(text)

    def stop(self) -> None:
        pass


def _cfg(**over) -> TrainConfig:
    kw = dict(epochs=2, steps_per_epoch=2, batch_size=2, crop=48, device="cpu", warmup_epochs=0)
    kw.update(over)
    return TrainConfig(**kw)


def _codec(registry, seed: int = 0) -> Codec:
    torch.manual_seed(seed)
    return build_codec(tiny_config(registry)["model"], registry)


def _sampler(data_dirs) -> CropSampler:
    return CropSampler(sorted(data_dirs["train"].iterdir()), 48, seed=0)


def test_run_writes_log_and_checkpoint(registry, data_dirs, tmp_path: Path) -> None:
    codec = _codec(registry)
    trainer = Trainer(codec, _cfg(), _sampler(data_dirs), sorted(data_dirs["train"].iterdir()), tmp_path)
    result = trainer.run()
    assert (result.steps, result.epochs) == (4, 2)
    assert not codec.training and codec.coder.fitted
    with (tmp_path / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    # the admm rate's declared report columns
    assert list(rows[0]) == [*LOG_FIELDS, "kept", "zeros_before", "zeros"]
    assert [int(r["epoch"]) for r in rows] == [1, 2] and [int(r["step"]) for r in rows] == [2, 4]
    assert all(float(r["loss"]) > 0 for r in rows)
    ckpt = torch_load_checkpoint(tmp_path / "checkpoint.pt")
    assert {"model", "optimizer", "scheduler", "epoch", "step"} <= set(ckpt)
    assert (ckpt["epoch"], ckpt["step"]) == (2, 4)
    fresh = _codec(registry, seed=5)
    fresh.load_state_dict(ckpt["model"])


def test_steps_cap_and_epochs(registry, data_dirs) -> None:
    t = Trainer(_codec(registry), _cfg(epochs=10, steps_per_epoch=None, steps=3), _sampler(data_dirs))
    assert t.steps_per_epoch == 2  # 3 images, batch 2
    assert (t.total_steps, t.total_epochs) == (3, 2)
    assert t.run().steps == 3


def test_training_is_reproducible(registry, data_dirs) -> None:
    digests = []
    for _ in range(2):
        codec = _codec(registry)
        Trainer(codec, _cfg(epochs=1), _sampler(data_dirs), sorted(data_dirs["train"].iterdir())).run()
        digests.append(codec.weights_digest())
    assert digests[0] == digests[1]


def test_training_changes_the_weights(registry, data_dirs) -> None:
    codec = _codec(registry)
    before = codec.weights_digest()
    Trainer(codec, _cfg(epochs=1, fit_coder=False), _sampler(data_dirs)).run()
    assert codec.weights_digest() != before
    assert not codec.coder.fitted


def test_warmup_trains_on_distortion_only(registry, data_dirs) -> None:
    warm = Trainer(_codec(registry), _cfg(epochs=1, warmup_epochs=1), _sampler(data_dirs)).run()
    assert warm.history[0]["loss"] == pytest.approx(warm.history[0]["distortion"])
    hot = Trainer(_codec(registry), _cfg(epochs=1, warmup_epochs=0), _sampler(data_dirs)).run()
    assert hot.history[0]["rate_loss"] > 0
    assert hot.history[0]["loss"] == pytest.approx(hot.history[0]["distortion"] + hot.history[0]["rate_loss"])


def test_a_plan_inside_the_warmup_says_so(registry, data_dirs) -> None:
    """Every step distortion-only: a sweep would train every rate point to the same weights."""
    for warmup, steps, said in ((1, 2, True), (1, 3, False), (0, 2, False)):
        notes = _Lines()
        cfg = _cfg(epochs=2, warmup_epochs=warmup, steps=steps)
        Trainer(_codec(registry), cfg, _sampler(data_dirs), progress=notes).run()
        assert any("distortion-only warm-up" in n for n in notes.lines) == said, (warmup, steps, notes.lines)


class _HalvingRate(ADMMRate):
    """Records its hooks and halves the learning rate after every epoch."""

    name = "halving"

    def __init__(self) -> None:
        super().__init__(cell=32, every=1, finetune=0.0)
        self.calls: list[str] = []

    def on_train_start(self, ctx: TrainContext) -> None:
        self.calls.append(f"start:{ctx.total_epochs}:{ctx.total_steps}")
        super().on_train_start(ctx)

    def on_batch_end(self, ctx: TrainContext, out) -> None:
        self.calls.append(f"batch:{ctx.step}")
        super().on_batch_end(ctx, out)

    def on_epoch_end(self, ctx: TrainContext) -> None:
        self.calls.append(f"epoch:{ctx.epoch}")
        super().on_epoch_end(ctx)
        ctx.lr_scale *= 0.5

    def on_train_end(self, ctx: TrainContext) -> None:
        self.calls.append("end")
        super().on_train_end(ctx)


def test_rate_hooks_and_lr_scale(data_dirs) -> None:
    torch.manual_seed(0)
    rate = _HalvingRate()
    codec = Codec(CAEEncoder(8, 0, 4), StochasticQuantizer(7), rate, HistogramCoder(), CAEDecoder(8, 0, 4))
    result = Trainer(codec, _cfg(epochs=3, steps_per_epoch=1, lr=0.01), _sampler(data_dirs)).run()
    assert rate.calls == ["start:3:3", "batch:1", "epoch:0", "batch:2", "epoch:1", "batch:3",
                          "epoch:2", "end"]  # fmt: skip
    # the scale set after epoch e applies from the next step on; the log shows the lr after the epoch
    assert [r["lr"] for r in result.history] == pytest.approx([0.01, 0.005, 0.0025])
    assert [r["event"] for r in result.history] == ["admm_step=1", "admm_step=2", "admm_step=3"]


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")


def test_time_limit_shortens_the_plan_before_any_epoch_hook(registry, data_dirs, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    codec = _codec(registry)
    codec.rate.on_epoch_end = lambda ctx: seen.append((ctx.total_epochs, ctx.total_steps))  # type: ignore[method-assign]
    cfg = _cfg(epochs=50, steps_per_epoch=2, time_limit=1e-6)
    result = Trainer(codec, cfg, _sampler(data_dirs), run_dir=tmp_path).run()
    assert (result.steps, result.epochs) == (2, 1)
    assert seen == [(1, 2)]
    with (tmp_path / "train_log.csv").open() as f:
        assert "time_limit_steps=2" in next(csv.DictReader(f))["event"]


def test_a_generous_time_limit_changes_nothing(registry, data_dirs) -> None:
    result = Trainer(_codec(registry), _cfg(time_limit=60.0), _sampler(data_dirs)).run()
    assert (result.steps, result.epochs) == (4, 2)


def test_time_limit_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="time_limit"):
        _cfg(time_limit=0).check()


# ---------------------------------------------------------------- the coder-fit stage's budget
def _images(folder: Path, n: int, h: int, w: int) -> list[Path]:
    from tests.helpers import write_image

    folder.mkdir()
    return [write_image(folder / f"f{i:02d}.png", h, w, seed=i) for i in range(n)]


def test_fit_plan_sees_no_more_pixels_than_training(registry, data_dirs, tmp_path: Path) -> None:
    images = _images(tmp_path / "fit", 12, 48, 48)  # 2304 px each
    cfg = _cfg(steps=1, epochs=1, steps_per_epoch=1, batch_size=2, crop=48)  # 1 × 2 × 48² = 4608 px
    trainer = Trainer(_codec(registry), cfg, _sampler(data_dirs), images)
    assert trainer.fit_plan() == images[:2]
    assert trainer.fit_plan(total_steps=100) == images  # a long run fits on every image
    assert Trainer(_codec(registry), _cfg(fit_images=3, steps=50), _sampler(data_dirs), images).fit_plan() \
        == images[:3]  # fmt: skip
    huge = _images(tmp_path / "huge", 2, 200, 200)
    assert Trainer(_codec(registry), cfg, _sampler(data_dirs), huge).fit_plan() == huge[:1]  # at least one


def test_steps_bound_the_fit_stage_and_progress_shows_both(registry, data_dirs, tmp_path: Path) -> None:
    images = _images(tmp_path / "fit", 12, 48, 48)
    recorder = _Lines()
    lines = recorder.lines
    cfg = _cfg(steps=1, epochs=1, steps_per_epoch=1)
    result = Trainer(_codec(registry), cfg, _sampler(data_dirs), images, progress=recorder).run()
    assert result.fit_images == 2
    assert any(t.startswith("stage 1/2: training, 1 steps; stage 2/2: fitting the histogram coder on 2")
               for t in lines), lines  # fmt: skip
    assert "start 1/2 training (steps) 1" in lines
    assert "start 2/2 fitting the histogram coder (images) 2" in lines


def test_time_limit_stops_the_fit_stage(registry, data_dirs, tmp_path: Path) -> None:
    images = _images(tmp_path / "fit", 8, 48, 48)
    cfg = _cfg(steps=50, epochs=1, steps_per_epoch=1, time_limit=1e-6)
    result = Trainer(_codec(registry), cfg, _sampler(data_dirs), images).run()
    assert result.steps == 1 and result.fit_images == 1  # one image, then the limit stops it


def test_preset_cpu_with_steps_5_fits_on_a_few_images(registry) -> None:
    """The trial that spent 43 s training and 3 minutes fitting on all 200 BSDS500 images."""
    import os

    from codec_lab.corelib.config import TrainConfig
    from codec_lab.corelib.data import training_images
    from codec_lab.registry.compose import assemble_config

    bsds = Path(os.environ.get("CODEC_DATA", "")) / "bsds500" / "train"
    if not os.environ.get("CODEC_DATA") or not bsds.is_dir():
        pytest.skip("needs CODEC_DATA with bsds500/train")
    cfg = assemble_config(registry, rate="admm", preset="cpu", train={"steps": 5})
    train = TrainConfig(**cfg["train"])
    images = training_images(str(bsds))
    trainer = Trainer(_codec(registry), train, _sampler_for(images[:1], train.crop), images)
    plan = trainer.fit_plan()
    assert len(images) == 200 and 1 <= len(plan) <= 5
    from codec_lab.corelib.images import image_pixels

    budget = 5 * train.batch_size * train.crop**2
    assert sum(image_pixels(p) for p in plan[:-1]) < budget


def _sampler_for(paths: list[Path], crop: int) -> CropSampler:
    return CropSampler(paths, crop, seed=0)
