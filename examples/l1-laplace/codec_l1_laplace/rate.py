"""``l1-sparsity``: an L1 penalty on the quantized latent as the training rate loss.

The rate loss is ``weight · Σ|ŷ| / pixels``: the magnitude of the quantized latent in grid steps
(``quantizer.grid_step``; 1 for learned levels), summed over the image and divided by its
pixel count, so it reads like "steps per pixel" beside a bpp. An L1 penalty drives most of the
latent to exactly zero, and a peaked entropy model (``laplace-static``) codes a near-certain
zero in a small fraction of a bit.

Which symbols are sent — the choice this plugin makes:

* **every symbol, by default** (``drop_below: 0``). A per-position threshold mask would need
  a side stream telling the decoder which positions are sent, and that map costs about what the
  zeros it skips cost under a peaked model; the decoder cannot derive it otherwise;
* **optionally, a channel mask** (``drop_below > 0``): at the end of training, the channels
  whose mean |ŷ| (in grid steps) stayed below ``drop_below`` are never sent. The mask is a
  (C, 1, 1) buffer saved with the model, so the decoder knows it without any side
  information, on every image size; the decoder sees zeros there. Training never sees the
  mask (it is decided after the last step), so keep the threshold small (e.g. 0.02: channels
  that are zero 98 % of the time).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from codec_lab.contracts import (
    Quantizer,
    Rate,
    RateOutput,
    ReportColumn,
    SetupContext,
    Stream,
    StreamSpec,
    TrainContext,
)
from codec_lab.errors import ConfigError

__all__ = ["L1SparsityRate"]


class L1SparsityRate(Rate):
    """L1 penalty on the quantized latent; every symbol sent, or quiet channels dropped.

    Args:
        weight: multiplies the L1 rate loss (larger: sparser latent, smaller files).
        drop_below: channels whose mean |ŷ| in grid steps stays below this over training
            are not sent (0: every channel is sent).
    """

    name = "l1-sparsity"
    summary = "L1 penalty on the quantized latent as the rate loss; every symbol sent"
    version = "0.1"
    # `codec build --rate l1-sparsity` composes these unless the user names others.
    default_components = {"encoder": "cae", "quantizer": "stochastic", "coder": "laplace-static",
                          "decoder": "cae"}  # fmt: skip
    # Scalars of RateOutput.info every table shows (training log, codec eval, reports).
    report_columns = (
        ReportColumn("l1", "L1", ".3f", "mean |ŷ| per latent element, in grid steps"),
        ReportColumn("zeros", "zeros", ".3f", "fraction of latent elements quantized to zero"),
        ReportColumn("kept", "kept", ".3f", "fraction of latent channels sent"),
    )
    # `codec compare` draws this rate's RD curve over these weights. Untuned starting values: a
    # Laplace latent of scale b ≈ 1 costs about 2.4 bits per unit of L1, so L1 per pixel is within
    # a small factor of the bpp and the weights are of the order the `entropy` rate puts on bpp.
    sweep = {"weight": (25.0, 50.0, 100.0, 200.0)}

    def __init__(self, weight: float = 50.0, drop_below: float = 0.0) -> None:
        super().__init__()
        if not weight >= 0:
            raise ConfigError(f"l1-sparsity: weight must be >= 0, got {weight}")
        if not drop_below >= 0:
            raise ConfigError(f"l1-sparsity: drop_below must be >= 0, got {drop_below}")
        self.weight, self.drop_below = weight, drop_below
        self.factor = 1

    def setup(self, ctx: SetupContext) -> list[StreamSpec]:
        # Everything the rate owns is a buffer created here, so a fresh codec loads any state
        # dict of the same composition (and the channel mask travels with the weights).
        c = ctx.latent_channels
        self.factor = ctx.downsampling_factor
        self.register_buffer("abs_sum", torch.zeros(c, dtype=torch.float64))
        self.register_buffer("batches", torch.zeros((), dtype=torch.float64))
        self.register_buffer("keep", torch.ones(c, dtype=torch.bool))
        return [StreamSpec("y", c, ctx.alphabet)]

    def _mask(self) -> torch.Tensor | None:
        """The (C, 1, 1) mask of the channels sent, or None when every channel is."""
        if bool(self.keep.all()):
            return None
        return self.keep.view(-1, 1, 1)

    def forward(
        self, y_tilde: torch.Tensor, features: Mapping[str, torch.Tensor], quantizer: Quantizer
    ) -> RateOutput:
        mask = self._mask()
        y_hat = y_tilde if mask is None else torch.where(mask, y_tilde, torch.zeros_like(y_tilde))
        mag = y_hat.abs() / (quantizer.grid_step or 1.0)
        b, _, h, w = y_tilde.shape
        rate_loss = self.weight * mag.sum() / (b * h * w * self.factor**2)
        if self.training:  # statistics for the channel mask, as BatchNorm keeps its running stats
            with torch.no_grad():
                self.abs_sum += mag.double().mean((0, 2, 3))
                self.batches += 1
        symbols = quantizer.to_symbols(y_tilde)
        info = {
            "l1": float(mag.detach().mean()),
            "zeros": float((y_hat.detach() == 0).float().mean()),
            "kept": float(self.keep.float().mean()),
        }
        return RateOutput(y_hat=y_hat, rate_loss=rate_loss, streams=[Stream(self.spec("y"), symbols, mask)],
                          info=info)  # fmt: skip

    def on_train_end(self, ctx: TrainContext) -> None:
        if self.drop_below > 0 and float(self.batches) > 0:
            mean = self.abs_sum / self.batches
            keep = mean >= self.drop_below
            keep[int(mean.argmax())] = True  # always send at least one channel
            self.keep.copy_(keep)

    def decode_mask(
        self, spec: StreamSpec, decoded: Mapping[str, torch.Tensor], latent_hw: tuple[int, int]
    ) -> torch.Tensor | None:
        return self._mask()  # from the model alone: no side information

    def reconstruct(
        self, decoded: Mapping[str, torch.Tensor], quantizer: Quantizer, latent_hw: tuple[int, int]
    ) -> torch.Tensor:
        y_hat = quantizer.from_symbols(decoded["y"])
        mask = self._mask()
        if mask is not None:
            y_hat = torch.where(mask, y_hat, torch.zeros_like(y_hat))
        return y_hat.unsqueeze(0)

    def extra_state_info(self) -> dict[str, float]:
        return {"weight": self.weight, "channels_sent": int(self.keep.sum())}
