"""``entropy``: a learned entropy estimator controls the rate (Ballé et al. 2018; CompressAI's
``EntropyBottleneck``).

A fully factorized, per-channel density ``p`` is learned jointly with the transforms. The
latent is rounded around the density's medians (the codec shifts the quantizer's grid by
:meth:`EntropyRate.quantization_offset`, exactly as CompressAI does), the likelihoods of the
quantized values are the codec's ``likelihoods``, and the rate loss is

    rate_loss = weight · Σ −log2 p(ŷ) / pixels      (estimated bits per pixel × weight)

With ``train.loss: mse`` (255²·MSE) the loss is CompressAI's ``RateDistortionLoss`` divided by
its λ: ``weight = 1/λ``, e.g. 150 ≈ λ 0.0067 (quality 3), 556 ≈ λ 0.0018 (quality 1).
The ``quantiles`` of the density are trained by the aux loss in their own optimizer; the
coding tables are built by ``update()`` after training (the training engine does it).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from codec_lab import hookimpl
from codec_lab.contracts import Component, Quantizer, Rate, RateOutput, SetupContext, Stream, StreamSpec
from codec_lab.corelib.entropy_models import TrackedBottleneck
from codec_lab.errors import ConfigError

__all__ = ["EntropyRate"]


class EntropyRate(Rate):
    """Rate = −log2 likelihood under a learned factorized density, weighted.

    Args:
        weight: multiplies the estimated bits per pixel in the training loss (1/λ of
            CompressAI's ``RateDistortionLoss`` with ``train.loss: mse``).
        tail_mass: probability mass left outside the coding tables' range (escape-coded).
        init_scale: initial scale of the density (CompressAI's default 10).
    """

    name = "entropy"
    summary = "learned factorized entropy estimator (CompressAI EntropyBottleneck), -log2 p rate"
    version = "0.1"
    # Trained on MSE as CompressAI's models are (loss = 255²·MSE + weight·bpp), Adam 1e-4 in
    # the paper recipe as CompressAI's zoo.
    train_presets = {
        "quick": {"loss": "mse", "lr": 1e-3},
        "cpu": {"loss": "mse", "lr": 1e-3},
        "paper": {"loss": "mse", "lr": 1e-4},
    }
    default_components = {"encoder": "gdn", "quantizer": "noise", "coder": "factorized",
                          "decoder": "gdn"}  # fmt: skip
    # codec compare: weight = 1/λ of CompressAI's quality levels 4..1 (λ 0.013 … 0.0018),
    # from large files to small; compare sorts points by their measured bpp.
    sweep = {"weight": (75.0, 150.0, 300.0, 600.0)}

    def __init__(self, weight: float = 150.0, tail_mass: float = 1e-9, init_scale: float = 10.0) -> None:
        super().__init__()
        if not weight >= 0:
            raise ConfigError(f"entropy: weight must be >= 0, got {weight}")
        if not 0 < tail_mass < 0.5:
            raise ConfigError(f"entropy: tail_mass must be in (0, 0.5), got {tail_mass}")
        if not init_scale > 0:
            raise ConfigError(f"entropy: init_scale must be > 0, got {init_scale}")
        self.weight, self.tail_mass, self.init_scale = weight, tail_mass, init_scale
        self.factor = 1

    def check_composition(self, parts: Mapping[str, Component]) -> str | None:
        if getattr(parts["quantizer"], "grid_step", None) is None:
            return ("entropy models a density over unit bins and needs a quantizer on a uniform "
                    "grid (noise or stochastic), not learned levels")  # fmt: skip
        return None

    def setup(self, ctx: SetupContext) -> list[StreamSpec]:
        self.factor = ctx.downsampling_factor
        self.bottleneck = TrackedBottleneck(
            ctx.latent_channels, tail_mass=self.tail_mass, init_scale=self.init_scale
        )
        return [StreamSpec("y", ctx.latent_channels, ctx.alphabet)]

    @staticmethod
    def _step(quantizer: Quantizer) -> float:
        step = quantizer.grid_step
        if step is None:
            raise ConfigError(f"entropy cannot work with quantizer {type(quantizer).name!r}",
                              "choose quantizer noise or stochastic")  # fmt: skip
        return float(step)

    def quantization_offset(self, quantizer: Quantizer) -> torch.Tensor:
        # Round around the medians, in latent units (the density works in grid steps).
        return (self.bottleneck.medians() * self._step(quantizer)).view(-1, 1, 1)

    def entropy_models(self) -> Mapping[str, torch.nn.Module]:
        return {"y": self.bottleneck}

    def forward(
        self, y_tilde: torch.Tensor, features: Mapping[str, torch.Tensor], quantizer: Quantizer
    ) -> RateOutput:
        step = self._step(quantizer)
        offset = self.quantization_offset(quantizer)
        symbols = quantizer.to_symbols(y_tilde - offset)
        likelihood = self.bottleneck.likelihood(y_tilde / step if step != 1.0 else y_tilde)
        b, _, h, w = y_tilde.shape
        pixels = b * h * w * self.factor**2
        bpp = -torch.log2(likelihood).sum() / pixels
        return RateOutput(
            y_hat=y_tilde,
            rate_loss=self.weight * bpp,
            streams=[Stream(self.spec("y"), symbols)],
            likelihoods={"y": likelihood},
        )

    def decode_mask(
        self, spec: StreamSpec, decoded: Mapping[str, torch.Tensor], latent_hw: tuple[int, int]
    ) -> None:
        return None

    def reconstruct(
        self, decoded: Mapping[str, torch.Tensor], quantizer: Quantizer, latent_hw: tuple[int, int]
    ) -> torch.Tensor:
        return quantizer.from_symbols(decoded["y"]).unsqueeze(0) + self.quantization_offset(quantizer)

    def extra_state_info(self) -> dict[str, float]:
        return {"weight": self.weight}


@hookimpl
def codec_register_rates() -> list[type[Rate]]:
    return [EntropyRate]
