"""The training engine: seeded, checkpointed every epoch, with rate-plugin hooks and a second
stage that fits the entropy coder on the training codes.

Launched by torchrun, training runs on PyTorch DistributedDataParallel: every process draws the
same global batch and trains on its shard, DDP averages the gradients, rank 0 logs and
checkpoints; after training rank 0 alone fits the coder, evaluates and saves."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec_lab.corelib.checkpoint import CHECKPOINT, capture_rng, restore_rng, save_checkpoint
from codec_lab.corelib.codec import Codec
from codec_lab.corelib.coder_fit import CoderFitter
from codec_lab.corelib.config import TrainConfig
from codec_lab.corelib.contracts import TrainContext
from codec_lab.corelib.data import CropSampler
from codec_lab.corelib.devices import resolve_device
from codec_lab.corelib.distributed import (
    all_reduce_mean,
    barrier,
    broadcast_object,
    check_batch_split,
    gather_objects,
    is_main,
    rank,
    shutdown,
    world_size,
)
from codec_lab.corelib.images import image_pixels
from codec_lab.corelib.losses import distortion_loss
from codec_lab.corelib.metrics import bpp_from_likelihoods
from codec_lab.corelib.outputs import atomic_output
from codec_lab.corelib.progress import NullProgress, Progress
from codec_lab.corelib.training_parts import Loop, TrainForward, average_grads, net_aux_split

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
    main: bool = True
    """False in the other processes of a distributed build: only rank 0 evaluates and saves."""
    notes: dict[str, Any] = field(default_factory=dict)
    """Facts about the build's start, kept across resumes (e.g. ``init``: the weights it
    started from), for the run's record."""


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
        notes: facts about the build's start (plain values), saved in every checkpoint and
            returned in :attr:`TrainResult.notes`; a resumed build takes the checkpoint's.
    """

    def __init__(
        self,
        codec: Codec,
        cfg: TrainConfig,
        sampler: CropSampler,
        fit_images: Sequence[Path] = (),
        run_dir: Path | None = None,
        progress: Progress | None = None,
        notes: dict[str, Any] | None = None,
    ) -> None:
        self.codec = codec
        self.notes = dict(notes or {})
        self.cfg = cfg
        self.sampler = sampler
        self.fit_images = list(fit_images)
        self.run_dir = run_dir
        self.progress = progress or NullProgress()
        self.device = resolve_device(cfg.device)
        self.rank, self.world, self.main = rank(), world_size(), is_main()
        if self.world > 1:
            check_batch_split(cfg.batch_size, self.world)
            if self.device.type == "cuda":
                self.device = torch.device("cuda", torch.cuda.current_device())
            if not self.main:
                self.progress = NullProgress()  # rank 0 reports for the job
        spe = cfg.steps_per_epoch or max(1, math.ceil(len(sampler) / cfg.batch_size))
        self.steps_per_epoch = spe
        self.total_steps = cfg.epochs * spe if cfg.steps is None else min(cfg.steps, cfg.epochs * spe)
        self.total_epochs = math.ceil(self.total_steps / spe)
        self.loss_fn = distortion_loss(cfg.loss, cfg.crop)
        self.fitter = CoderFitter(codec, cfg, self.fit_images, sampler=sampler, run_dir=run_dir,
                                  progress=self.progress, device=self.device, label="2/2 ")  # fmt: skip
        self._opts: tuple[torch.optim.Optimizer, torch.optim.Optimizer | None, Any] | None = None
        self._ctx = TrainContext()
        self._fwd = TrainForward(codec, self.loss_fn)
        self._ddp: torch.nn.Module | None = None
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
        # Each process its own noise (rank 0 that of a single process); the crop sampler has
        # its own generator, the same in every process.
        seed = self.cfg.seed + self.rank
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)

    def _write_log(self, history: list[dict[str, Any]]) -> None:
        """Rewrite ``train_log.csv`` from the history, atomically: a kill never leaves half a
        row, and a resumed run's log holds exactly its checkpoint's epochs."""
        if self.run_dir is None or not self.main:
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.log_fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(history)
        with atomic_output(self.run_dir / "train_log.csv", overwrite=True) as tmp:
            tmp.write_text(buf.getvalue())

    def _save(self, stage: str, loop: Loop, fit: dict[str, Any] | None = None) -> None:
        """Write ``checkpoint.pt``: the whole training state at a step boundary.

        In a distributed build every process calls it (the random states are gathered) and
        rank 0 writes; the rest of the state is the same in every process.
        """
        if self.run_dir is None or self._opts is None:
            return
        rngs = gather_objects(capture_rng(self.device)) if self.world > 1 else None
        if not self.main:
            return
        opt, aux_opt, sched = self._opts
        state = {
            "stage": stage,
            "model": self.codec.state_dict(),
            "optimizer": opt.state_dict(),
            "aux_optimizer": None if aux_opt is None else aux_opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rate": self.codec.rate.train_state(),
            "loop": {**{k: v for k, v in asdict(loop).items() if k != "started"},
                     "elapsed": loop.elapsed_now()},
            "context": {"lr_scale": self._ctx.lr_scale, "distortion_only": self._ctx.distortion_only},
            "plan": {"total_steps": self.total_steps, "total_epochs": self.total_epochs},
            "rng": capture_rng(self.device) if rngs is None else rngs[0],
            "rng_ranks": rngs,
            "world": self.world,
            "sampler": self.sampler.state_dict(),
            "fit": fit,
            "notes": self.notes,
            # Kept for readers of format 1 (tests, users' scripts): the last completed epoch.
            "epoch": loop.epoch,
            "step": loop.step,
        }
        save_checkpoint(self.run_dir / CHECKPOINT, state)

    def _restore(self, ckpt: dict[str, Any], ctx: TrainContext) -> Loop:
        """Put the codec, optimizers, rate, plan and random states back as checkpointed."""
        assert self._opts is not None
        opt, aux_opt, sched = self._opts
        self.codec.load_state_dict(ckpt["model"], strict=True)
        opt.load_state_dict(ckpt["optimizer"])
        if aux_opt is not None and ckpt.get("aux_optimizer") is not None:
            aux_opt.load_state_dict(ckpt["aux_optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        self.codec.rate.load_train_state(ckpt.get("rate") or {})
        plan = ckpt["plan"]
        self.total_steps, self.total_epochs = int(plan["total_steps"]), int(plan["total_epochs"])
        ctx.total_steps, ctx.total_epochs = self.total_steps, self.total_epochs
        ctx.lr_scale = float(ckpt["context"]["lr_scale"])
        ctx.distortion_only = bool(ckpt["context"]["distortion_only"])
        fields = {f.name for f in dataclasses.fields(Loop)}
        loop = Loop(**{k: v for k, v in ckpt["loop"].items() if k in fields})
        loop.started = time.perf_counter() - loop.elapsed
        ctx.epoch, ctx.step = min(loop.epoch, self.total_epochs - 1), loop.step
        self.sampler.load_state_dict(ckpt["sampler"])
        self.notes = dict(ckpt.get("notes") or self.notes)
        self._restore_rng(ckpt, loop.step)
        self._write_log(loop.history)
        return loop

    def _restore_rng(self, ckpt: dict[str, Any], step: int) -> None:
        """Each process's own random state; with another process count than the checkpoint's,
        rank 0 takes the saved one and the others a fresh seed (same data order, other noise)."""
        ranks = ckpt.get("rng_ranks")
        if ranks is not None and len(ranks) == self.world:
            restore_rng(ranks[self.rank])
        elif self.rank == 0:
            restore_rng(ckpt["rng"])
        else:
            seed = self.cfg.seed + 1000 * self.rank + step
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
        saved = int(ckpt.get("world", 1))
        if saved != self.world:
            self.progress.message(f"the checkpoint was written by {saved} process(es), this build runs "
                                  f"{self.world}: the same crops, other quantization noise")  # fmt: skip

    def run(self, resume: dict[str, Any] | None = None) -> TrainResult:
        """Train, call the rate plugin's hooks, fit the coder; return the history.

        Args:
            resume: a checkpoint (:func:`~codec_lab.corelib.checkpoint.load_checkpoint`) of an
                interrupted run of the same config: training continues from it, to the same
                weights an uninterrupted run reaches (same machine and thread count).
        """
        codec, cfg = self.codec.to(self.device), self.cfg
        net, aux = net_aux_split(codec)
        opt = torch.optim.Adam(net, lr=cfg.lr, weight_decay=cfg.weight_decay)
        aux_opt = torch.optim.Adam(aux, lr=cfg.aux_lr) if aux else None
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience
        )
        self._opts = (opt, aux_opt, sched)
        self._ctx = ctx = TrainContext(total_epochs=self.total_epochs, total_steps=self.total_steps,
                                       rank=self.rank, world_size=self.world)  # fmt: skip
        codec.train()
        if resume is None:
            self._seed()
            codec.rate.on_train_start(ctx)
            loop = Loop(started=time.perf_counter())
            warmup = cfg.warmup_epochs * self.steps_per_epoch
            if cfg.warmup_epochs > 0 and self.total_steps <= warmup:
                # Else a tiny sweep trains every rate point to the same weights, silently.
                self.progress.message(
                    f"note: all {self.total_steps} steps fall in the distortion-only warm-up "
                    f"(train.warmup_epochs={cfg.warmup_epochs} of {self.steps_per_epoch} steps): the "
                    "rate loss never trains; give more steps or --set train.warmup_epochs=0")  # fmt: skip
        else:
            loop = self._restore(resume, ctx)
            self.progress.message(self._resume_line(resume["stage"], loop))
        stage = "train" if resume is None else resume["stage"]
        if stage == "train":
            self._train(loop, ctx, net, aux, aux_opt)
            codec.rate.on_train_end(ctx)  # every process: ADMM's last step all-reduces
            loop.train_seconds = loop.elapsed_now()
            self._save("fit", loop)
        if self.world > 1:
            # Rank 0 fits the coder, evaluates and saves alone (as one process would).
            self._ddp = None
            barrier()
            shutdown()
            if not self.main:
                return TrainResult(loop.step, self.total_epochs, loop.train_seconds, 0.0,
                                   list(loop.history), main=False)  # fmt: skip
        if stage in ("train", "fit"):
            t1 = time.perf_counter()
            self.fitter.train_steps = loop.step
            self.fitter.deadline = (loop.started + cfg.time_limit * 60
                                    if cfg.time_limit is not None else None)  # fmt: skip
            fit_resume = resume.get("fit") if resume is not None and stage == "fit" else None
            before = float(fit_resume.get("seconds", 0.0)) if fit_resume else 0.0
            fit_state: dict[str, Any] = {}

            def fit_checkpoint(state: dict[str, Any]) -> None:
                fit_state.clear()
                fit_state.update(state)
                self._save("fit", loop, state)

            fit = self.fitter.run(resume=fit_resume, on_checkpoint=fit_checkpoint)
            # Tables from quantiles found by bisection, not only the aux loss: a short run's
            # quantiles have not converged, and symbols outside them cost escape bits.
            codec.update(force=True, update_quantiles=True)
            loop.fit_seconds = before + time.perf_counter() - t1
            loop.fit_images, loop.fit_steps = fit.images, fit.steps
            self._save("fitted", loop, fit_state or None)  # the stage's last state, for the record
        codec.eval()
        return TrainResult(loop.step, self.total_epochs, loop.train_seconds, loop.fit_seconds,
                           list(loop.history), fit_images=loop.fit_images,
                           fit_steps=loop.fit_steps, notes=dict(self.notes))  # fmt: skip

    def _resume_line(self, stage: str, loop: Loop) -> str:
        if stage == "train":
            return (f"resuming at step {loop.step}/{self.total_steps} (epoch {loop.epoch + 1}/"
                    f"{self.total_epochs}), {loop.elapsed:.0f} s trained so far")
        if stage == "fit":
            return "resuming at the coder-fitting stage (training is complete)"
        return "resuming after training and coder fit: evaluating and saving"

    def _wrap(self, aux: list[torch.nn.Parameter]) -> torch.nn.Module:
        """The training forward, under DistributedDataParallel when there are several processes.

        The aux parameters (CompressAI's quantiles) are trained by their own loss, outside the
        forward, so DDP leaves them out and :meth:`_step` averages their gradients itself.
        """
        if self.world == 1:
            return self._fwd
        fwd: torch.nn.Module = self._fwd
        if self.device.type == "cuda":  # PyTorch's SyncBatchNorm runs on GPUs only
            fwd = torch.nn.SyncBatchNorm.convert_sync_batchnorm(fwd)
        aux_ids = {id(p) for p in aux}
        ignore = [n for n, p in fwd.named_parameters() if id(p) in aux_ids]
        DDP = torch.nn.parallel.DistributedDataParallel
        DDP._set_params_and_buffers_to_ignore_for_model(fwd, ignore)
        # Every parameter reaches a loss with the rate term (a step without it is synchronised
        # by hand, see _step), so DDP needs no unused-parameter search: it costs a graph
        # traversal per step and PyTorch warns when it finds nothing.
        self._ddp = DDP(fwd, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                        find_unused_parameters=False)  # fmt: skip
        return self._ddp

    def _train(self, loop: Loop, ctx: TrainContext, net: list[torch.nn.Parameter],
               aux: list[torch.nn.Parameter], aux_opt: torch.optim.Optimizer | None) -> None:  # fmt: skip
        """Stage 1: the optimizer steps, from wherever ``loop`` stands."""
        codec, cfg = self.codec, self.cfg
        opt, _, sched = self._opts  # type: ignore[misc]
        fwd = self._wrap(aux)
        stages = 2 if self.fits_coder else 1
        self.fitter.train_steps = self.total_steps
        if stages == 2 and loop.step == 0:
            self.progress.message(f"stage 1/2: training, {self.total_steps} steps; stage 2/2: "
                                  f"{self.fitter.describe()}")  # fmt: skip
        self.progress.start("training (steps)" if stages == 1 else "1/2 training (steps)",
                            self.total_steps)
        if loop.step:
            self.progress.advance(loop.step)
        t_first = time.perf_counter()
        start_step = loop.step
        while loop.epoch < self.total_epochs:
            epoch = loop.epoch
            ctx.epoch = epoch
            while loop.in_epoch < self.steps_per_epoch and loop.step < self.total_steps:
                if ctx.lr_scale != loop.lr_scale:  # a rate plugin switched stage
                    for g in opt.param_groups:
                        g["lr"] *= ctx.lr_scale / loop.lr_scale
                    loop.lr_scale = ctx.lr_scale
                vals = self._step(fwd, ctx, epoch, net, aux, opt, aux_opt)
                loop.step += 1
                loop.in_epoch += 1
                if loop.step == start_step + 1:  # the first step pays for warm-up (allocations)
                    t_first = time.perf_counter()
                for k, v in vals.items():
                    loop.sums[k] = loop.sums.get(k, 0.0) + v
                self.progress.advance(1, epoch=epoch + 1, loss=vals["loss"],
                                      est_bpp=vals["est_bpp"], psnr=vals["psnr"])
                every = cfg.checkpoint_every
                if (every and loop.step % every == 0 and loop.in_epoch < self.steps_per_epoch
                        and loop.step < self.total_steps):  # fmt: skip
                    self._save("train", loop)  # an epoch's end checkpoints anyway
            ctx.log = {}
            if epoch == 0 and cfg.time_limit is not None and not loop.planned:
                taken = loop.step - start_step  # steps of this process, timed after the first
                per_step = ((time.perf_counter() - t_first) / (taken - 1) if taken > 1
                            else loop.elapsed_now() / max(taken, 1))  # fmt: skip
                # Rank 0's clock plans for every process, which must stop at the same step.
                seconds, per_step = broadcast_object((loop.elapsed_now(), per_step))
                self._fit_time_limit(ctx, loop.step, seconds, per_step)
                loop.planned = True
            codec.rate.on_epoch_end(ctx)
            n = max(loop.in_epoch, 1)
            means = {k: v / n for k, v in loop.sums.items()}
            sched.step(means.get("loss", 0.0))
            row = {"epoch": epoch + 1, "step": loop.step, **means, "lr": opt.param_groups[0]["lr"],
                   "seconds": round(loop.elapsed_now(), 2),
                   "event": " ".join(f"{k}={v}" for k, v in ctx.log.items())}  # fmt: skip
            loop.history.append(row)
            self._write_log(loop.history)
            loop.epoch, loop.in_epoch, loop.sums = epoch + 1, 0, {}
            self._save("train", loop)
            self.progress.message(
                f"epoch {epoch + 1}/{self.total_epochs}  loss {means.get('loss', 0):.2f}  "
                f"est. bpp {means.get('est_bpp', 0):.3f}  PSNR {means.get('psnr', 0):.2f} dB"
                + (f"  [{row['event']}]" if row["event"] else "")
            )
        self.progress.stop()

    def _step(
        self,
        fwd: torch.nn.Module,
        ctx: TrainContext,
        epoch: int,
        net: list[torch.nn.Parameter],
        aux: list[torch.nn.Parameter],
        opt: torch.optim.Optimizer,
        aux_opt: torch.optim.Optimizer | None,
    ) -> dict[str, float]:
        """One optimizer step (and the aux optimizer's); the step's logged values, averaged
        over the processes of a distributed build."""
        codec, cfg = self.codec, self.cfg
        x = self.sampler.batch(cfg.batch_size, (self.rank, self.world)).to(self.device)
        with_rate = epoch >= cfg.warmup_epochs and not ctx.distortion_only
        opt.zero_grad(set_to_none=True)
        if self._ddp is not None and not with_rate:
            # Without the rate term the entropy model's parameters are unused: their gradients
            # must stay None, as in one process, which DDP's bucketed all-reduce cannot do.
            with self._ddp.no_sync():  # type: ignore[operator]
                loss = fwd(x, with_rate)
                loss.backward()
            average_grads(net, self.world)
        else:
            loss = fwd(x, with_rate)
            loss.backward()
        out, dist = self._fwd.last, self._fwd.last_dist
        assert dist is not None
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(net, cfg.grad_clip)
        opt.step()
        if aux_opt is not None:
            aux_opt.zero_grad(set_to_none=True)
            aux_loss = codec.aux_loss()
            aux_loss.backward()
            if self.world > 1:  # outside DDP (see _wrap): average by hand
                average_grads(aux, self.world)
            aux_opt.step()
        ctx.step += 1  # the hook sees the step count after this step
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
            self._fwd.last, self._fwd.last_dist = {}, None  # activations are not kept past the step
        if self.world > 1:  # equal shards: the mean of the means is the global batch's
            vals = dict(zip(vals, all_reduce_mean(list(vals.values())), strict=True))
        return vals

    def _fit_time_limit(self, ctx: TrainContext, step: int, seconds: float, per_step: float) -> None:
        """Shrink the plan to what fits ``time_limit``, measured on the first epoch.

        ``step`` is the steps taken, ``seconds`` the time spent, ``per_step`` the steady pace
        (timed after the first step, which pays for warm-up). Done before any epoch-end hook,
        so rate schedules (ADMM steps, stage switches) are planned on the shortened run from
        the start.
        """
        assert self.cfg.time_limit is not None
        per_step = max(per_step, 1e-9)
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
