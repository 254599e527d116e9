"""``importance``: the content-weighted importance-map rate (Li et al., CVPR 2018 / TPAMI 2020;
methods-spec §2.4, A11–A14).

The encoder returns an importance map ``p ∈ (0, 1)`` at latent resolution beside the code.
With ``L = levels`` and ``n`` code channels (``cpl = n / L`` channels per level)::

    Q = floor(L · p) ∈ {0 … L−1}          (A11)
    m[k] = 1  if k < cpl · Q               (the first cpl·Q channels are sent)
    decoder input = code · m

``Q`` is sent first, as its own stream ("map", one channel, alphabet ``L``, no mask); the
decoder rebuilds ``m`` from it, so masked code positions cost no bits.

Training (two stages, driven by the training hooks): for the first ``stage1`` fraction of the
epochs every channel is kept and there is no rate loss; then the mask and the rate loss
``γ · max(0, mean(p) − r)`` per image (GLOBAL threshold, A13/A14) switch on and the learning
rate is multiplied by ``stage2_lr``. The mask's gradient to ``p`` is a surrogate (A12):
``boxcar`` (CVPR: ``∂m_k/∂p = L`` while ``L·p`` is within 1 of channel k's switching level)
or ``v1`` (the author's later rule: ``∂L/∂p = γ·(#masked)/n·[mean(p) > r] − Σ_masked |g_k|``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch

from codec_lab import hookimpl
from codec_lab.contracts import (
    Component,
    Quantizer,
    Rate,
    RateOutput,
    ReportColumn,
    SetupContext,
    Stream,
    StreamSpec,
    TrainContext,
)
from codec_lab.errors import BitstreamError, ConfigError

__all__ = ["ImportanceRate", "importance_mask", "quantize_map"]

MaskGrad = Literal["boxcar", "v1"]


def quantize_map(p: torch.Tensor, levels: int) -> torch.Tensor:
    """``Q = floor(L·p)`` clamped to ``{0 … L−1}`` (int64), the map's symbols."""
    return torch.floor(p.detach() * levels).clamp_(0, levels - 1).to(torch.int64)


def importance_mask(q: torch.Tensor, channels: int, levels: int) -> torch.Tensor:
    """The code mask from map symbols ``q`` (…, 1, h, w): channel k is sent iff ``k < cpl·Q``."""
    cpl = channels // levels
    k = torch.arange(channels, device=q.device).view(channels, 1, 1)
    return k < cpl * q


class _MaskedCode(torch.autograd.Function):
    """``code · m`` (``m`` the hard mask of ``p``) with a surrogate gradient back to ``p``."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, p: torch.Tensor, mask: torch.Tensor,  # type: ignore[override]
                levels: int, rule: str, over: torch.Tensor) -> torch.Tensor:  # fmt: skip
        m = mask.to(y.dtype)
        ctx.save_for_backward(y, p, m, over)
        ctx.levels, ctx.rule = levels, rule
        return y * m

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):  # type: ignore[override]
        y, p, m, over = ctx.saved_tensors
        levels, n = ctx.levels, y.shape[1]
        cpl = n // levels
        if ctx.rule == "boxcar":
            # Channel k (0-based) switches on at level floor(k/cpl)+1 = ceil((k+1)·L/n).
            switch = (torch.arange(n, device=y.device) // cpl + 1).view(1, n, 1, 1).to(p.dtype)
            lp = levels * p
            window = ((lp - 1 <= switch) & (switch < lp + 1)).to(g.dtype)
            dp = (g * y * window).sum(1, keepdim=True) * levels
        else:  # v1: push p down when over budget, up by the benefit of the masked channels
            masked = 1 - m
            dp = over * masked.sum(1, keepdim=True) / n - (g.abs() * masked).sum(1, keepdim=True)
        return g * m, dp, None, None, None, None


class ImportanceRate(Rate):
    """Importance-map masking of the code with a thresholded rate loss.

    Args:
        levels: importance levels L (channels per level = latent channels / L; TPAMI: 16 with
            32 channels, CVPR: 16 with 64).
        threshold: r, the fraction of the maximum code kept before the rate loss applies, in
            (0, 1]; smaller r, smaller files.
        gamma: γ, weight of the rate loss ``γ·max(0, mean(p) − r)`` (in distortion-loss units).
        stage1: fraction of the epochs trained without mask and rate loss, in [0, 1).
        stage2_lr: learning-rate multiplier when the mask and rate loss switch on, in (0, 1].
        mask_grad: the mask's gradient surrogate: ``boxcar`` (CVPR) or ``v1`` (A12).
    """

    name = "importance"
    summary = "importance-map mask (map sent as a side stream) with a thresholded rate loss"
    version = "0.1"
    # cpu: 2,400 steps, most for the autoencoder, the rest to fit the map and mask (stage 2).
    presets = {"cpu": {"stage1": 0.5, "stage2_lr": 0.3}, "paper": {"levels": 16}}
    # The content-weighted nets (no BatchNorm) stalled near 13 dB at 4e-3 in a 120-step test
    # on BSDS500 crops, against 16.9 dB at 1e-3; the papers train with Adam 1e-4 (A21).
    train_presets = {"quick": {"lr": 1e-3}, "cpu": {"lr": 1e-3}, "paper": {"lr": 1e-4}}
    report_columns = (ReportColumn("kept", "kept", ".3f", "fraction of code positions sent", (0.0, 1.0)),)
    # codec compare: r, the fraction of the code kept, from small files to large.
    sweep = {"threshold": (0.2, 0.35, 0.5, 0.7)}
    default_components = {"encoder": "content-weighted", "quantizer": "multilevel", "coder": "histogram",
                          "decoder": "content-weighted"}  # fmt: skip

    def __init__(
        self,
        levels: int = 16,
        threshold: float = 0.5,
        gamma: float = 1000.0,
        stage1: float = 0.3,
        stage2_lr: float = 0.1,
        mask_grad: MaskGrad = "boxcar",
    ) -> None:
        super().__init__()
        if not 2 <= levels <= 256:
            raise ConfigError(f"importance: levels must be in [2, 256], got {levels}")
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"importance: threshold must be in (0, 1], got {threshold}",
                              "r is the fraction of the code kept, e.g. 0.3 or 0.5")
        if gamma < 0:
            raise ConfigError(f"importance: gamma must be >= 0, got {gamma}")
        if not 0.0 <= stage1 < 1.0:
            raise ConfigError(f"importance: stage1 must be in [0, 1), got {stage1}")
        if not 0.0 < stage2_lr <= 1.0:
            raise ConfigError(f"importance: stage2_lr must be in (0, 1], got {stage2_lr}")
        self.levels, self.threshold, self.gamma = levels, threshold, gamma
        self.stage1, self.stage2_lr, self.mask_grad = stage1, stage2_lr, mask_grad
        # 0: stage 1 (no mask in training), 1: masked stage; saved so a checkpoint resumes right.
        self.register_buffer("stage", torch.zeros((), dtype=torch.int64))

    def check_composition(self, parts: Mapping[str, Component]) -> str | None:
        enc = parts["encoder"]
        if "importance" not in getattr(type(enc), "features", ("y",)):
            return (f"rate 'importance' needs an encoder that outputs an importance map; "
                    f"encoder {type(enc).name!r} outputs only {', '.join(type(enc).features)} "
                    f"(use --encoder content-weighted)")  # fmt: skip
        return None

    def setup(self, ctx: SetupContext) -> list[StreamSpec]:
        latent_channels, alphabet = ctx.latent_channels, ctx.alphabet
        if alphabet is None:
            raise ConfigError("importance needs a quantizer with a finite alphabet (e.g. multilevel)")
        if latent_channels % self.levels:
            valid = [d for d in range(2, latent_channels + 1) if latent_channels % d == 0]
            raise ConfigError(
                f"importance: levels={self.levels} does not divide the {latent_channels} code channels",
                f"valid levels for {latent_channels} channels: {', '.join(map(str, valid))}",
            )
        return [StreamSpec("map", 1, self.levels, side=True), StreamSpec("y", latent_channels, alphabet)]

    # ------------------------------------------------------------------ data path
    def _masking(self) -> bool:
        return not self.training or int(self.stage) >= 1

    def forward(
        self, y_tilde: torch.Tensor, features: Mapping[str, torch.Tensor], quantizer: Quantizer
    ) -> RateOutput:
        p = features["importance"]
        if p.shape[-2:] != y_tilde.shape[-2:] or p.shape[1] != 1:
            raise ValueError(f"importance map {tuple(p.shape)} does not match the code "
                             f"{tuple(y_tilde.shape)}")
        q = quantize_map(p, self.levels)
        per_image = p.flatten(1).mean(1)
        over = (per_image > self.threshold).to(p.dtype).view(-1, 1, 1, 1) * self.gamma
        if self._masking():
            mask = importance_mask(q, y_tilde.shape[1], self.levels)
            y_hat = _MaskedCode.apply(y_tilde, p, mask, self.levels, self.mask_grad, over)
            hinge = self.gamma * (per_image - self.threshold).clamp_min(0).mean()
            # v1 carries the rate push in its own gradient; the hinge is then reported only.
            rate_loss = hinge if self.mask_grad == "boxcar" else hinge.detach()
        else:
            y_hat, mask, rate_loss = y_tilde, None, y_tilde.new_zeros(())
        streams = [
            Stream(self.spec("map"), q, None),
            Stream(self.spec("y"), quantizer.to_symbols(y_tilde), mask),
        ]
        kept = 1.0 if mask is None else float(mask.float().mean())
        info = {"kept": kept, "map_mean": float(per_image.detach().mean())}
        return RateOutput(y_hat=y_hat, rate_loss=rate_loss, streams=streams, info=info)

    def decode_mask(
        self, spec: StreamSpec, decoded: Mapping[str, torch.Tensor], latent_hw: tuple[int, int]
    ) -> torch.Tensor | None:
        if spec.name == "map":
            return None
        q = decoded["map"]
        if tuple(q.shape) != (1, *latent_hw):
            raise BitstreamError(f"map stream has shape {tuple(q.shape)}, the code needs (1, {latent_hw})",
                                 "the file is damaged or was made by a different model")
        return importance_mask(q, spec.channels, self.levels)

    def reconstruct(
        self, decoded: Mapping[str, torch.Tensor], quantizer: Quantizer, latent_hw: tuple[int, int]
    ) -> torch.Tensor:
        mask = importance_mask(decoded["map"], decoded["y"].shape[0], self.levels)
        values = quantizer.from_symbols(decoded["y"])
        return torch.where(mask, values, torch.zeros_like(values))[None]

    # ------------------------------------------------------------------ two-stage schedule
    def _switch_epoch(self, ctx: TrainContext) -> int:
        return round(self.stage1 * ctx.total_epochs)

    def _enter_stage2(self, ctx: TrainContext) -> None:
        self.stage.fill_(1)
        ctx.distortion_only = False
        ctx.lr_scale = self.stage2_lr

    def on_train_start(self, ctx: TrainContext) -> None:
        if int(self.stage) >= 1 or self._switch_epoch(ctx) == 0:
            self._enter_stage2(ctx)
        else:
            ctx.distortion_only = True

    def on_epoch_end(self, ctx: TrainContext) -> None:
        if int(self.stage) == 0 and ctx.epoch + 1 >= self._switch_epoch(ctx):
            self._enter_stage2(ctx)
            ctx.log["importance_stage"] = 2

    def on_train_end(self, ctx: TrainContext) -> None:
        self.stage.fill_(1)  # a trained model always masks

    def extra_state_info(self) -> dict[str, Any]:
        return {"levels": self.levels, "threshold": self.threshold, "gamma": self.gamma,
                "mask_grad": self.mask_grad}  # fmt: skip


@hookimpl
def codec_register_rates() -> list[type[Rate]]:
    return [ImportanceRate]
