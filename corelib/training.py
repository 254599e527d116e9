"""The training engine: seeded, checkpointed every epoch, with rate-plugin hooks and a second
stage that fits the entropy coder on the training codes."""

from __future__ import annotations

import csv
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.coder_fit import CoderFitter
from codec_lab.corelib.config import TrainConfig
from codec_lab.corelib.contracts import TrainContext
from codec_lab.corelib.data import CropSampler
from codec_lab.corelib.devices import resolve_device
from codec_lab.corelib.images import image_pixels
from codec_lab.corelib.losses import distortion_loss
from codec_lab.corelib.metrics import bpp_from_likelihoods
from codec_lab.corelib.outputs import atomic_output
from codec_lab.corelib.progress import NullProgress, Progress

__all__ = ["TrainResult", "Trainer", "resolve_device"]  # resolve_device: from codec_lab.corelib.devices

LOG_FIELDS = ("epoch", "step", "loss", "distortion", "rate_loss", "est_bpp", "psnr", "lr", "seconds",
              "event")  # fmt: skip
"""Columns of ``train_log.csv``; the rate's ``report_columns`` follow them."""


@dataclass
class TrainResult:
    """What a training run did."""

    steps: int
    epochs: int
    seconds: float
    fit_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    fit_images: int = 0
    """Training images a counted coder was fitted on (0: none)."""
    fit_steps: int = 0
    """Optimizer steps of a trained coder's stage (0: none)."""


def _net_aux_split(codec: Codec) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """CompressAI's split: parameters named ``*.quantiles`` get their own optimizer."""
    net, aux = [], []
    for name, p in codec.named_parameters():
        if p.requires_grad:
            (aux if name.endswith(".quantiles") else net).append(p)
    return net, aux


class Trainer:
    """Trains a codec on random crops, then fits its entropy coder on whole training images.

    The two stages share one budget: the coder fit sees at most as many pixels as training
    did (``steps × batch_size × crop²``), so ``--steps`` bounds the whole build, and with
    ``time_limit`` the training plan leaves room for the fit, which also stops at the limit.

    Args:
        codec: the composed codec (moved to the configured device).
        cfg: the ``train`` section.
        sampler: draws training crops.
        fit_images: images whose hard codes fit the entropy coder (stage 2).
        run_dir: where ``train_log.csv`` and ``checkpoint.pt`` go (None: nowhere).
        progress: receives progress (bars, epoch lines).
    """

    def __init__(
        self,
        codec: Codec,
        cfg: TrainConfig,
        sampler: CropSampler,
        fit_images: Sequence[Path] = (),
        run_dir: Path | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.codec = codec
        self.cfg = cfg
        self.sampler = sampler
        self.fit_images = list(fit_images)
        self.run_dir = run_dir
        self.progress = progress or NullProgress()
        self.device = resolve_device(cfg.device)
        spe = cfg.steps_per_epoch or max(1, math.ceil(len(sampler) / cfg.batch_size))
        self.steps_per_epoch = spe
        self.total_steps = cfg.epochs * spe if cfg.steps is None else min(cfg.steps, cfg.epochs * spe)
        self.total_epochs = math.ceil(self.total_steps / spe)
        self.loss_fn = distortion_loss(cfg.loss, cfg.crop)
        self.fitter = CoderFitter(codec, cfg, self.fit_images, sampler=sampler, run_dir=run_dir,
                                  progress=self.progress, device=self.device, label="2/2 ")  # fmt: skip
        # The rate's declared scalars are logged after the fixed columns.
        self.log_fields = (*LOG_FIELDS, *(c.key for c in codec.rate.report_columns))

    @property
    def fits_coder(self) -> bool:
        """Whether a coder-fitting stage follows training."""
        return self.fitter.fitting != "none"

    def fit_plan(self, total_steps: int | None = None) -> list[Path]:
        """The training images a counted coder fit will observe after ``total_steps``
        (default: the planned steps); see :meth:`CoderFitter.plan_images`."""
        return self.fitter.plan_images(self.total_steps if total_steps is None else total_steps)

    def _seed(self) -> None:
        torch.manual_seed(self.cfg.seed)
        np.random.seed(self.cfg.seed)
        random.seed(self.cfg.seed)

    def _write_log(self, row: dict[str, Any]) -> None:
        if self.run_dir is None:
            return
        path = self.run_dir / "train_log.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.log_fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def _checkpoint(self, epoch: int, step: int, opt: torch.optim.Optimizer, sched: Any) -> None:
        if self.run_dir is None:
            return
        state = {
            "model": self.codec.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "step": step,
        }
        with atomic_output(self.run_dir / "checkpoint.pt", overwrite=True) as tmp:  # each epoch
            torch.save(state, tmp)

    def run(self) -> TrainResult:
        """Train, call the rate plugin's hooks, fit the coder; return the history."""
        self._seed()
        codec, cfg = self.codec.to(self.device), self.cfg
        net, aux = _net_aux_split(codec)
        opt = torch.optim.Adam(net, lr=cfg.lr, weight_decay=cfg.weight_decay)
        aux_opt = torch.optim.Adam(aux, lr=cfg.aux_lr) if aux else None
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience
        )
        ctx = TrainContext(total_epochs=self.total_epochs, total_steps=self.total_steps)
        codec.train()
        codec.rate.on_train_start(ctx)
        history: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        t_first = t0
        step, lr_scale = 0, 1.0
        stages = 2 if self.fits_coder else 1
        self.fitter.train_steps = self.total_steps
        if stages == 2:
            self.progress.message(f"stage 1/2: training, {self.total_steps} steps; stage 2/2: "
                                  f"{self.fitter.describe()}")  # fmt: skip
        self.progress.start("training (steps)" if stages == 1 else "1/2 training (steps)",
                            self.total_steps)
        epoch = -1
        while epoch + 1 < self.total_epochs:
            epoch += 1
            ctx.epoch = epoch
            sums: dict[str, float] = {}
            n = 0
            while n < self.steps_per_epoch and step < self.total_steps:
                if ctx.lr_scale != lr_scale:  # a rate plugin switched stage
                    for g in opt.param_groups:
                        g["lr"] *= ctx.lr_scale / lr_scale
                    lr_scale = ctx.lr_scale
                x = self.sampler.batch(cfg.batch_size).to(self.device)
                out = codec(x)
                dist = self.loss_fn(x, out["x_hat"])
                with_rate = epoch >= cfg.warmup_epochs and not ctx.distortion_only
                loss = dist + (out["rate_loss"] if with_rate else 0.0)
                coder_loss = codec.coder.loss(out["rate"].streams)
                if coder_loss is not None:
                    loss = loss + coder_loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(net, cfg.grad_clip)
                opt.step()
                if aux_opt is not None:
                    aux_opt.zero_grad(set_to_none=True)
                    aux_loss = codec.aux_loss()
                    aux_loss.backward()
                    aux_opt.step()
                step += 1
                if step == 1:  # the first step pays for warm-up (allocations, cuDNN's choice)
                    t_first = time.perf_counter()
                n += 1
                ctx.step = step
                codec.rate.on_batch_end(ctx, out["rate"])
                with torch.no_grad():
                    num_pixels = x.shape[0] * x.shape[2] * x.shape[3]
                    mse = ((x - out["x_hat"].clamp(0, 1)) ** 2).flatten(1).mean(1).clamp_min(1e-10)
                    vals = {
                        "loss": float(loss),
                        "distortion": float(dist),
                        "rate_loss": float(out["rate_loss"]),
                        "est_bpp": float(bpp_from_likelihoods(out["likelihoods"], num_pixels)),
                        "psnr": float((-10 * torch.log10(mse)).mean()),
                        **{c.key: float(out["rate"].info.get(c.key, float("nan")))
                           for c in codec.rate.report_columns},
                    }
                for k, v in vals.items():
                    sums[k] = sums.get(k, 0.0) + v
                self.progress.advance(1, epoch=epoch + 1, loss=vals["loss"],
                                      est_bpp=vals["est_bpp"], psnr=vals["psnr"])
            ctx.log = {}
            if epoch == 0 and cfg.time_limit is not None:
                self._fit_time_limit(ctx, step, time.perf_counter() - t0, time.perf_counter() - t_first)
            codec.rate.on_epoch_end(ctx)
            means = {k: v / max(n, 1) for k, v in sums.items()}
            sched.step(means.get("loss", 0.0))
            row = {"epoch": epoch + 1, "step": step, **means, "lr": opt.param_groups[0]["lr"],
                   "seconds": round(time.perf_counter() - t0, 2),
                   "event": " ".join(f"{k}={v}" for k, v in ctx.log.items())}  # fmt: skip
            history.append(row)
            self._write_log(row)
            self._checkpoint(epoch + 1, step, opt, sched)
            self.progress.message(
                f"epoch {epoch + 1}/{self.total_epochs}  loss {means.get('loss', 0):.2f}  "
                f"est. bpp {means.get('est_bpp', 0):.3f}  PSNR {means.get('psnr', 0):.2f} dB"
                + (f"  [{row['event']}]" if row["event"] else "")
            )
        codec.rate.on_train_end(ctx)
        self.progress.stop()
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        self.fitter.train_steps = step
        self.fitter.deadline = t0 + cfg.time_limit * 60 if cfg.time_limit is not None else None
        fit = self.fitter.run()
        # Tables from quantiles found by bisection, not only the aux loss: a short run's
        # quantiles have not converged, and symbols outside them cost escape bits.
        codec.update(force=True, update_quantiles=True)
        codec.eval()
        return TrainResult(step, self.total_epochs, seconds, time.perf_counter() - t1, history,
                           fit_images=fit.images, fit_steps=fit.steps)  # fmt: skip

    def _fit_time_limit(self, ctx: TrainContext, step: int, seconds: float, steady: float) -> None:
        """Shrink the plan to what fits ``time_limit``, measured on the first epoch.

        ``seconds`` is the epoch's time, ``steady`` its time after the first step: the rest of
        the run goes at the steady pace. Done before any epoch-end hook, so rate schedules
        (ADMM steps, stage switches) are planned on the shortened run from the start.
        """
        assert self.cfg.time_limit is not None
        per_step = max(steady / (step - 1) if step > 1 else seconds, 1e-9)
        left = max(0.0, self.cfg.time_limit * 60 - seconds)
        fits = step + int(left / per_step)
        if self.fitter.fitting == "trained":
            # A trained coder's stage gets a fifth of what is left (it stops at the limit too).
            fits = step + int(0.8 * left / per_step)
        elif self.fits_coder:
            # Leave room for the coder fit: an eval forward costs about a third of a training
            # step per pixel (no backward, no loss), and the fit sees at most the training pixels.
            per_pixel = per_step / (self.cfg.batch_size * self.cfg.crop**2) / 3
            all_fit = sum(image_pixels(p) for p in self.fit_plan(self.total_steps)) * per_pixel
            lo, hi = step, fits
            while lo < hi:  # the largest plan whose training and fit both fit in what is left
                mid = (lo + hi + 1) // 2
                cost = (mid - step) * per_step + min(all_fit, mid * per_step / 3)
                lo, hi = (mid, hi) if cost <= left else (lo, mid - 1)
            fits = lo
        if fits >= self.total_steps:
            return
        self.total_steps = max(step, fits)
        self.total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        ctx.total_steps, ctx.total_epochs = self.total_steps, self.total_epochs
        ctx.log["time_limit_steps"] = self.total_steps
        self.progress.message(
            f"time limit {self.cfg.time_limit:g} min: training {self.total_steps} steps "
            f"({self.total_epochs} epochs) at {per_step:.3f} s/step"
        )
