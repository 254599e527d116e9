"""Rate contract: how training controls the bit rate, and which symbols are sent."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from codec_lab.corelib.contracts.base import Component, ReportColumn, SetupContext
from codec_lab.corelib.contracts.quantizer import Quantizer
from codec_lab.corelib.streams import Stream, StreamSpec

__all__ = ["Rate", "RateOutput", "TrainContext"]


@dataclass
class RateOutput:
    """What a rate plugin returns from :meth:`Rate.forward`.

    Attributes:
        y_hat: the decoder input (masked positions zeroed or otherwise filled).
        rate_loss: scalar training proxy, already weighted (ADMM penalty, map hinge, or
            −log2 likelihood · λ). Zero tensor when the rate plugin adds none.
        streams: the streams to code, in coding order, symbols shaped (B, C, H, W).
        likelihoods: per-stream likelihoods when the rate plugin owns the probability
            model (an entropy estimator); None lets the entropy coder supply them.
        info: scalars for logs and reports (e.g. ``kept_fraction``).
    """

    y_hat: torch.Tensor
    rate_loss: torch.Tensor
    streams: list[Stream]
    likelihoods: dict[str, torch.Tensor] | None = None
    info: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainContext:
    """Training-loop state handed to rate-plugin hooks.

    Hooks may set ``lr_scale`` (multiplies the learning rate from the next step on) and
    ``distortion_only`` (train without the rate loss, e.g. a warm-up stage).

    Attributes:
        epoch: the current epoch, from 0.
        total_epochs: the number of epochs of this training.
        step: optimizer steps taken so far (1 after the first step).
        total_steps: the number of optimizer steps of this training.
        lr_scale: multiplies the learning rate from the next step on (set by a hook).
        distortion_only: True trains without the rate loss (set by a hook).
        log: extra values a hook records for the training log.
        rank: this process's rank in a distributed build (0 otherwise).
        world_size: the processes of a distributed build (1 otherwise). Each process's
            :meth:`Rate.on_batch_end` sees only its shard of the global batch: statistics
            that decide something must be summed over the processes with
            :func:`~codec_lab.contracts.all_reduce_sum` before they are used.
    """

    epoch: int = 0
    total_epochs: int = 1
    step: int = 0
    total_steps: int = 1
    lr_scale: float = 1.0
    distortion_only: bool = False
    log: dict[str, Any] = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1


class Rate(Component):
    """Turns the quantized latent into streams and a training rate loss.

    A rate plugin decides which symbols are transmitted (its masks), in what streams, and
    how training pushes the rate down. Its masks must be derivable by the decoder:
    :meth:`decode_mask` sees only the streams already decoded and the model itself.
    """

    kind: ClassVar[str] = "rate"
    default_components: ClassVar[Mapping[str, str]] = {}
    """Components ``codec build --rate NAME`` picks when the user names none."""

    tile_size: int | None = None
    """Code the image as independent tiles of this many pixels (None: whole image)."""

    train_presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    """Changes to the ``train`` recipe per preset when this rate is chosen, e.g.
    ``{"cpu": {"loss": "mse", "lr": 1e-3}}`` (a rate trained on MSE)."""

    specs: tuple[StreamSpec, ...] = ()
    """The streams :meth:`setup` declared, kept by the codec; build streams from these."""

    report_columns: ClassVar[tuple[ReportColumn, ...]] = ()
    """Scalars of :attr:`RateOutput.info` that every table shows (training log, ``codec eval``,
    run report, benchmarks) — e.g. the fraction of code positions sent. Tables know them only
    through this declaration; ``codec compare`` reports each with a 95 % confidence interval
    over the images."""

    sweep: ClassVar[Mapping[str, Sequence[Any]]] = {}
    """The rate knob(s) ``codec compare`` sweeps to draw this strategy's RD curve: this
    rate's config key → the values of a small default sweep (3–4 points),
    e.g. ``{"keep": (0.05, 0.1, 0.2, 0.4)}``. Several keys are swept as their product. Empty:
    the user must give ``--sweep NAME:KEY=V1,V2,…``."""

    @abc.abstractmethod
    def setup(self, ctx: SetupContext) -> list[StreamSpec]:  # type: ignore[override]
        """Create what the rate owns and declare its streams, in coding order.

        Called once by the ``Codec``, which keeps the returned specs in :attr:`specs`
        (``forward`` builds its streams from them; they are never re-declared).

        Args:
            ctx: ``latent_channels`` C, ``alphabet`` K (None: unbounded integers),
                ``downsampling_factor`` f (a template learned on P-pixel crops has P/f
                latent rows), and the other ``parts``.
        """

    def spec(self, name: str) -> StreamSpec:
        """The declared spec of stream ``name``."""
        for s in self.specs:
            if s.name == name:
                return s
        raise KeyError(f"rate {type(self).name!r} declares no stream {name!r}")

    @abc.abstractmethod
    def forward(
        self, y_tilde: torch.Tensor, features: Mapping[str, torch.Tensor], quantizer: Quantizer
    ) -> RateOutput:
        """Build streams and the rate loss from the quantized latent ``y_tilde``.

        Args:
            y_tilde: the quantizer's output (relaxed in training, hard in eval).
            features: everything the encoder returned (``"y"`` and extras).
            quantizer: the codec's quantizer, for ``to_symbols``/``from_symbols``.
        """

    @abc.abstractmethod
    def decode_mask(
        self, spec: StreamSpec, decoded: Mapping[str, torch.Tensor], latent_hw: tuple[int, int]
    ) -> torch.Tensor | None:
        """The (C, h, w) mask of stream ``spec`` from the streams decoded before it.

        Must equal the mask :meth:`forward` produced for the same image, bit for bit.
        """

    @abc.abstractmethod
    def reconstruct(
        self, decoded: Mapping[str, torch.Tensor], quantizer: Quantizer, latent_hw: tuple[int, int]
    ) -> torch.Tensor:
        """The (1, C, h, w) decoder input from every decoded stream's (C, h, w) symbols."""

    def quantization_offset(self, quantizer: Quantizer) -> torch.Tensor | None:
        """A (C, 1, 1) shift of ``quantizer``'s grid, or None (no shift).

        The codec quantizes ``y - offset`` and adds the offset back, so the rate plugin sees
        ``y_tilde = quantizer(y - offset) + offset`` and must add it in :meth:`reconstruct`.
        An entropy estimator rounds around its medians this way (as CompressAI does).
        """
        return None

    def entropy_models(self) -> Mapping[str, torch.nn.Module]:
        """Learned density models this rate owns, by stream name, for coders that code
        with them (e.g. an ``EntropyBottleneck`` whose tables a coder codes with)."""
        return {}

    # Training hooks: called by the training engine; defaults do nothing.
    def on_train_start(self, ctx: TrainContext) -> None:
        """Called once before the first step (plan schedules from ``ctx.total_epochs``).

        Not called again when a build resumes (``codec build --resume``): the buffers, the
        :class:`TrainContext` and :meth:`train_state` are restored instead.
        """

    def on_batch_end(self, ctx: TrainContext, out: RateOutput) -> None:
        """Called after every optimizer step with that step's rate output.

        In a distributed build (``codec build --nproc N``, ``torchrun``) every process calls
        it with the rate output of **its shard** of the global batch. Accumulate here, and
        sum over the processes where the statistics are used (see :meth:`on_epoch_end`).
        """

    def on_epoch_end(self, ctx: TrainContext) -> None:
        """Called after every epoch (ADMM's Z/U updates, stage switches), in every process.

        Distributed builds: a decision taken from statistics gathered in
        :meth:`on_batch_end` must be the same in every process and must see the whole global
        batch, so sum the statistics first with
        :func:`~codec_lab.contracts.all_reduce_sum` (a collective: every process calls it,
        with the same shapes, in the same order; in one process it returns its input)::

            acc, count = all_reduce_sum(self._acc, self._count)
            template = acc / count

        Buffers need no care: the model's are synchronised from rank 0 at every forward, and
        only rank 0 writes checkpoints. Decisions from the epoch or step counters alone (a
        stage switch) are the same everywhere already.
        """

    def on_train_end(self, ctx: TrainContext) -> None:
        """Called once after the last step, before the entropy coder is fitted, in every
        process of a distributed build (the same rule as :meth:`on_epoch_end`)."""

    def train_state(self) -> dict[str, Any]:
        """Training state kept outside the state dict (accumulators, counters), saved in every
        checkpoint so that a resumed build continues the same run to the same weights.

        Buffers need nothing here: they travel in the state dict. Values must be tensors,
        numbers, strings, None, or lists/dicts of them (checkpoints load with
        ``weights_only``, which unpickles no code). Default: nothing.
        """
        return {}

    def load_train_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`train_state` returned, when a build resumes (tensors come back
        on the CPU; move them where the rate needs them)."""
