"""The coder-fitting stage: fit a codec's entropy coder on training codes, transform frozen.

Runs after the transform is trained (``codec build``) or on its own (``codec fit-coder``).
What it does follows the coder's ``fitting`` declaration:

* ``counted``: the hard streams of whole training images are observed
  (``fit_begin``/``fit_observe``/``fit_end``);
* ``trained``: the coder's parameters get their own Adam optimizer and minimize
  ``fit_loss`` on the hard streams of random training crops (gradient norm clipped at
  ``train.grad_clip``, as the transform's), with progress, a log
  (``coder_log.csv``) and a checkpoint (``coder_checkpoint.pt``), between ``fit_begin``
  and ``fit_end``;
* ``none``: nothing happens.

Its budget is bounded by the transform's: a counted fit observes at most the pixels training
saw (``steps × batch_size × crop²``, at least one image); a trained fit takes
``train.coder_steps`` (default: the coder's ``default_fit_steps``), capped by ``train.steps``
when that is set. Both stop at a deadline (``train.time_limit``), after at least one unit.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codec_lab.corelib.checkpoint import capture_rng, restore_rng
from codec_lab.corelib.codec import Codec
from codec_lab.corelib.config import TrainConfig
from codec_lab.corelib.data import CropSampler
from codec_lab.corelib.images import image_pixels, load_image
from codec_lab.corelib.outputs import atomic_output
from codec_lab.corelib.progress import NullProgress, Progress

__all__ = ["CODER_LOG_FIELDS", "CoderFit", "CoderFitter"]

CODER_LOG_FIELDS = ("step", "loss", "lr", "seconds")


@dataclass
class CoderFit:
    """What a coder-fitting stage did."""

    fitting: str
    """The coder's declaration: ``counted``, ``trained`` or ``none``."""
    images: int = 0
    """Training images observed (``counted``)."""
    steps: int = 0
    """Optimizer steps taken (``trained``)."""
    seconds: float = 0.0
    last_loss: float | None = None
    """The trained coder's loss over its last logged interval."""


class CoderFitter:
    """Fits ``codec.coder`` on training data with the transform frozen.

    Args:
        codec: the trained codec (its coder is fitted in place).
        cfg: the ``train`` section (``fit_coder``, ``fit_images``, ``coder_*``, ``steps``).
        images: the training images (whole images for a counted fit).
        sampler: draws training crops for a trained coder (None: one is made from
            ``images`` when needed).
        train_steps: the transform's optimizer steps, which bound a counted fit's pixels.
        run_dir: where ``coder_log.csv`` and ``coder_checkpoint.pt`` go (None: nowhere).
        progress: receives progress.
        deadline: ``time.perf_counter()`` value to stop at (None: no limit).
        device: where the networks run.
        label: progress label prefix (e.g. ``"2/2 "`` as the second stage of a build).
    """

    def __init__(
        self,
        codec: Codec,
        cfg: TrainConfig,
        images: Sequence[Path],
        *,
        sampler: CropSampler | None = None,
        train_steps: int | None = None,
        run_dir: Path | None = None,
        progress: Progress | None = None,
        deadline: float | None = None,
        device: torch.device | str = "cpu",
        label: str = "",
    ) -> None:
        self.codec, self.cfg, self.images = codec, cfg, list(images)
        self.sampler = sampler
        self.train_steps = train_steps
        self.run_dir, self.progress = run_dir, progress or NullProgress()
        self.deadline, self.device, self.label = deadline, torch.device(device), label

    @property
    def fitting(self) -> str:
        """What this stage will do: the coder's declaration, or ``none`` when switched off."""
        if not self.cfg.fit_coder or not self.images:
            return "none"
        return self.codec.coder.fitting

    def plan_images(self, train_steps: int | None = None) -> list[Path]:
        """The images a counted fit observes (``train.fit_images`` caps the count; the pixels
        training sees cap the total size; at least one image)."""
        images = self.images[: self.cfg.fit_images] if self.cfg.fit_images else self.images
        steps = train_steps if train_steps is not None else self.train_steps
        if steps is None:
            return images
        budget = steps * self.cfg.batch_size * self.cfg.crop**2
        chosen: list[Path] = []
        pixels = 0
        for path in images:
            if chosen and pixels >= budget:
                break
            chosen.append(path)
            pixels += image_pixels(path)
        return chosen

    def plan_steps(self) -> int:
        """Optimizer steps of a trained fit: ``train.coder_steps`` or the coder's default,
        capped by ``train.steps`` when set."""
        steps = self.cfg.coder_steps or type(self.codec.coder).default_fit_steps
        return min(steps, self.cfg.steps) if self.cfg.steps else steps

    def describe(self) -> str:
        """One line saying what the stage will do."""
        name = type(self.codec.coder).name
        if self.fitting == "counted":
            return f"fitting the {name} coder on {len(self.plan_images())} training image(s)"
        if self.fitting == "trained":
            return f"training the {name} coder, {self.plan_steps()} steps"
        return f"nothing to fit for the {name} coder"

    def _late(self, done: int) -> bool:
        return bool(done) and self.deadline is not None and time.perf_counter() > self.deadline

    def run(
        self,
        resume: Mapping[str, Any] | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    ) -> CoderFit:
        """Run the stage; the codec ends in eval mode.

        Args:
            resume: the stage's state from a checkpoint (what ``on_checkpoint`` received),
                with the coder's parameters already loaded: a trained stage continues from
                it. A counted fit is deterministic and cheap, so it starts over.
            on_checkpoint: receives the trained stage's state at every checkpoint interval
                (a build writes it into ``checkpoint.pt`` with the model); None writes the
                coder and that state to ``coder_checkpoint.pt`` in ``run_dir``.
        """
        t0 = time.perf_counter()
        result = CoderFit(self.fitting)
        self.codec.to(self.device).eval()
        if self.fitting == "counted":
            result.images = self._count()
        elif self.fitting == "trained":
            result.steps, result.last_loss = self._train(resume, on_checkpoint)
        self.codec.eval()
        result.seconds = time.perf_counter() - t0
        return result

    # ------------------------------------------------------------------ counted
    def _count(self) -> int:
        images = self.plan_images()
        coder = self.codec.coder
        coder.fit_begin()
        self.progress.start(f"{self.label}fitting the {type(coder).name} coder (images)", len(images))
        done = 0
        for path in images:
            if self._late(done):
                self.progress.message(f"time limit reached: coder fitted on {done} of {len(images)} "
                                      "image(s)")  # fmt: skip
                break
            x = load_image(path)[0].to(self.device)
            coder.fit_observe(self.codec.streams(x))
            done += 1
            self.progress.advance(1)
        coder.fit_end()
        self.progress.stop()
        return done

    # ------------------------------------------------------------------ trained
    def _train(
        self,
        resume: Mapping[str, Any] | None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None,
    ) -> tuple[int, float | None]:
        coder, cfg = self.codec.coder, self.cfg
        params = [p for p in coder.parameters() if p.requires_grad]
        if not params:
            return 0, None
        sampler = self.sampler or CropSampler(self.images, cfg.crop, seed=cfg.seed)
        opt = torch.optim.Adam(params, lr=cfg.coder_lr)
        steps = self.plan_steps()
        batch = cfg.coder_batch_size or cfg.batch_size
        log_every = max(1, min(50, steps // 10))
        save_every = cfg.checkpoint_every or log_every
        coder.fit_begin()
        self.progress.start(f"{self.label}training the {type(coder).name} coder (steps)", steps)
        t0 = time.perf_counter()
        total, count, last, done = 0.0, 0, None, 0
        log: list[dict[str, Any]] = []
        if resume is not None:
            opt.load_state_dict(resume["optimizer"])
            sampler.load_state_dict(resume["sampler"])
            restore_rng(resume["rng"])
            done, total, count, last = (int(resume["step"]), float(resume["total"]), int(resume["count"]),
                                        resume["last"])  # fmt: skip
            t0 -= float(resume.get("seconds", 0.0))
            log = list(resume.get("log") or [])
            self._write_log(log)  # rows the interrupted process wrote after its checkpoint go
            self.progress.advance(done)

        def save(step: int) -> None:
            state = {"step": step, "optimizer": opt.state_dict(), "sampler": sampler.state_dict(),
                     "rng": capture_rng(self.device), "total": total, "count": count, "last": last,
                     "seconds": time.perf_counter() - t0, "log": list(log)}  # fmt: skip
            if on_checkpoint is not None:
                on_checkpoint(state)
            elif self.run_dir is not None:
                with atomic_output(self.run_dir / "coder_checkpoint.pt", overwrite=True) as tmp:
                    torch.save({"coder": coder.state_dict(), **state}, tmp)

        for step in range(done + 1, steps + 1):
            if self._late(done):
                self.progress.message(f"time limit reached: coder trained {done} of {steps} steps")
                break
            x = sampler.batch(batch).to(self.device)
            streams = self.codec.streams(x)  # hard codes; the transform stays frozen
            coder.train()
            loss = coder.fit_loss(streams)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:  # a context network's loss can blow up in one step without it
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            coder.eval()
            done = step
            value = float(loss.detach())
            total, count = total + value, count + 1
            self.progress.advance(1, loss=value)
            if step % log_every == 0 or step == steps:
                last = total / count
                log.append({"step": step, "loss": last, "lr": cfg.coder_lr,
                            "seconds": round(time.perf_counter() - t0, 2)})  # fmt: skip
                self._write_log(log)
                total, count = 0.0, 0
            if step % save_every == 0 or step == steps:
                save(step)
        coder.fit_end()
        self.progress.stop()
        return done, last

    def _write_log(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite ``coder_log.csv`` atomically (a kill never leaves half a row)."""
        if self.run_dir is None:
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CODER_LOG_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        with atomic_output(self.run_dir / "coder_log.csv", overwrite=True) as tmp:
            tmp.write_text(buf.getvalue())
