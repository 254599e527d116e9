"""``admm``: ADMM pruning of the latent code (CAE-ADMM, methods-spec §1.5, §1.9, A1–A4).

The code ``c`` (quantized latent) is pushed towards a sparse dataset-level template ``Z``
(one entry per latent position of a ``cell``×``cell`` crop) by the augmented-Lagrangian
penalty ``ρ/2·‖c − Z + U‖²`` (squared, summed per image, averaged over the batch — A4).
Every ``every`` epochs::

    A = mean code over the last period        (A3)
    Z = keep the l = keep·|Z| largest |A + U| (the true projection — A2)
    U = U + A − Z

After the last update the support of ``Z`` is frozen: the remaining ``finetune`` fraction of
training (and every evaluation) masks the pruned positions. The decoder knows the mask from
the model, so pruned positions cost no bits.

On images larger than one cell the template is applied by ``grid``:

* ``channel`` (default) — a channel-level template: the ``keep``·C channels with the most kept
  positions are sent everywhere, the others never. Measured best on Kodak (bench/RESULTS.md:
  higher PSNR and MS-SSIM at a lower bpp than ``periodic`` with the same weights);
* ``periodic`` — the template repeats over the latent of the whole image;
* ``tile`` — the image is coded as independent ``cell``-pixel tiles (the paper's protocol).

The grid applies in the masked fine-tuning too, so a model is fine-tuned with the mask it
will be coded with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch

from codec_lab import hookimpl
from codec_lab.contracts import (
    Quantizer,
    Rate,
    RateOutput,
    ReportColumn,
    SetupContext,
    Stream,
    StreamSpec,
    TrainContext,
    all_reduce_sum,
)
from codec_lab.errors import ConfigError

__all__ = ["ADMMRate"]

Grid = Literal["periodic", "tile", "channel"]


class ADMMRate(Rate):
    """ADMM latent-code pruning with a dataset-level template.

    Args:
        rho: penalty weight ρ of ``ρ/2·‖c − Z + U‖²``.
        keep: fraction of template positions kept (paper: 0.1).
        every: epochs between Z/U updates (paper: 20).
        finetune: fraction of the epochs, at the end, trained with the frozen mask.
        cell: crop size in pixels the template covers (paper: 128).
        grid: how the template covers larger images: periodic, tile or channel.
    """

    name = "admm"
    summary = "ADMM pruning of the latent to its largest entries (fixed template mask)"
    version = "0.1"
    # ADMM steps every few epochs of each recipe; the paper keeps 10 % and steps every 20 epochs.
    presets = {
        "quick": {"every": 6, "finetune": 0.2},
        "cpu": {"every": 8, "keep": 0.2, "finetune": 0.2},
        "paper": {"every": 20, "keep": 0.1, "finetune": 0.1},
    }
    report_columns = (
        ReportColumn("kept", "kept", ".3f", "fraction of latent positions sent", (0.0, 1.0)),
        ReportColumn("zeros_before", "zeros before", ".3f",
                     "fraction of zero code elements before pruning (the quantized latent)", (0.0, 1.0)),
        ReportColumn("zeros", "zeros after", ".3f", "fraction of zero code elements after pruning",
                     (0.0, 1.0)),
    )
    # codec compare: from a few kept channels to about half (the paper keeps 10 %).
    sweep = {"keep": (0.05, 0.1, 0.2, 0.4)}
    default_components = {"encoder": "cae", "quantizer": "stochastic", "coder": "histogram",
                          "decoder": "cae"}  # fmt: skip

    def __init__(
        self,
        rho: float = 0.01,
        keep: float = 0.1,
        every: int = 20,
        finetune: float = 0.2,
        cell: int = 128,
        grid: Grid = "channel",
    ) -> None:
        super().__init__()
        if not 0.0 < keep <= 1.0:
            raise ConfigError(f"admm: keep must be in (0, 1], got {keep}")
        if rho < 0:
            raise ConfigError(f"admm: rho must be >= 0, got {rho}")
        if every < 1:
            raise ConfigError(f"admm: every must be >= 1 epoch, got {every}")
        if not 0.0 <= finetune < 1.0:
            raise ConfigError(f"admm: finetune must be in [0, 1), got {finetune}")
        self.rho, self.keep, self.every, self.finetune = rho, keep, every, finetune
        self.cell, self.grid = cell, grid
        self._acc: torch.Tensor | None = None
        self._count = 0

    @property
    def tile_size(self) -> int | None:  # type: ignore[override]
        """The ``tile`` grid codes ``cell``-pixel tiles; the others the whole image."""
        return self.cell if self.grid == "tile" else None

    def setup(self, ctx: SetupContext) -> list[StreamSpec]:
        latent_channels, alphabet = ctx.latent_channels, ctx.alphabet
        downsampling_factor = ctx.downsampling_factor
        if self.cell % downsampling_factor:
            raise ConfigError(
                f"admm: cell {self.cell} is not a multiple of the encoder's factor "
                f"{downsampling_factor}"
            )
        if alphabet is None:
            raise ConfigError("admm needs a quantizer with a finite alphabet (e.g. stochastic)")
        side = self.cell // downsampling_factor
        shape = (latent_channels, side, side)
        self.register_buffer("Z", torch.zeros(shape))
        self.register_buffer("U", torch.zeros(shape))
        self.register_buffer("template", torch.ones(shape, dtype=torch.bool))
        self.register_buffer("projected", torch.zeros((), dtype=torch.bool))
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))
        return [StreamSpec("y", latent_channels, alphabet)]

    # ------------------------------------------------------------------ masks
    def _cover(self, t: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Repeat a (C, s, s) template over an (h, w) latent and crop."""
        s = t.shape[-1]
        reps = (1, -(-hw[0] // s), -(-hw[1] // s))
        return t.repeat(*reps)[:, : hw[0], : hw[1]]

    def mask(self, hw: tuple[int, int]) -> torch.Tensor | None:
        """The (C, h, w) transmitted-position mask for an (h, w) latent, or None (no template)."""
        if not bool(self.projected):
            return None
        if self.grid == "channel":
            counts = self.template.flatten(1).sum(1)
            k = max(1, round(self.keep * counts.numel()))
            keep_ch = torch.zeros_like(counts, dtype=torch.bool)
            keep_ch[torch.argsort(counts, descending=True, stable=True)[:k]] = True
            return keep_ch[:, None, None].expand(-1, hw[0], hw[1]).clone()
        return self._cover(self.template, hw)

    def _masking(self) -> bool:
        return bool(self.projected) and (bool(self.frozen) or not self.training)

    # ------------------------------------------------------------------ data path
    def forward(
        self, y_tilde: torch.Tensor, features: Mapping[str, torch.Tensor], quantizer: Quantizer
    ) -> RateOutput:
        hw = (y_tilde.shape[-2], y_tilde.shape[-1])
        mask = self.mask(hw) if self._masking() else None
        y_hat = y_tilde if mask is None else torch.where(mask, y_tilde, torch.zeros_like(y_tilde))
        if bool(self.frozen) or self.rho == 0:
            rate_loss = y_tilde.new_zeros(())
        else:
            target = self._cover(self.Z - self.U, hw)
            rate_loss = self.rho / 2 * (y_tilde - target).pow(2).flatten(1).sum(1).mean()
        stream = Stream(self.spec("y"), quantizer.to_symbols(y_hat), None if mask is None else mask[None])
        kept = 1.0 if mask is None else float(mask.float().mean())
        info = {"kept": kept, "zeros_before": float((y_tilde.detach() == 0).float().mean()),
                "zeros": float((y_hat.detach() == 0).float().mean())}
        return RateOutput(y_hat=y_hat, rate_loss=rate_loss, streams=[stream], info=info)

    def decode_mask(
        self, spec: StreamSpec, decoded: Mapping[str, torch.Tensor], latent_hw: tuple[int, int]
    ) -> torch.Tensor | None:
        return self.mask(latent_hw)

    def reconstruct(
        self, decoded: Mapping[str, torch.Tensor], quantizer: Quantizer, latent_hw: tuple[int, int]
    ) -> torch.Tensor:
        values = quantizer.from_symbols(decoded["y"])
        mask = self.mask(latent_hw)
        if mask is not None:
            values = torch.where(mask, values, torch.zeros_like(values))
        return values[None]

    # ------------------------------------------------------------------ ADMM steps
    def _fold(self, code: torch.Tensor) -> torch.Tensor:
        """Mean over the batch and over every template-sized cell of a (B, C, H, W) code."""
        s = self.Z.shape[-1]
        b, c, h, w = code.shape
        h, w = h - h % s, w - w % s
        if h == 0 or w == 0:
            return self._cover(code.mean(0), (s, s))
        cells = code[..., :h, :w].reshape(b, c, h // s, s, w // s, s)
        return cells.mean(dim=(0, 2, 4))

    def admm_step(self) -> None:
        """Z/U update from the mean code since the last step (projection keeps largest |V|)."""
        if self._acc is None or self._count == 0:
            return
        # Distributed builds: the mean code of the global batches, the same in every process.
        acc, count = all_reduce_sum(self._acc, self._count)
        a = acc / count
        v = a + self.U
        n_keep = max(1, round(self.keep * v.numel()))
        keep = torch.zeros(v.numel(), dtype=torch.bool, device=v.device)
        keep[torch.topk(v.abs().flatten(), n_keep).indices] = True
        keep = keep.view_as(v)
        self.Z.copy_(torch.where(keep, v, torch.zeros_like(v)))
        self.U.add_(a - self.Z)
        self.template.copy_(keep)
        self.projected.fill_(True)
        self._acc, self._count = None, 0

    def _plan(self, ctx: TrainContext) -> tuple[int, set[int]]:
        last = ctx.total_epochs - round(self.finetune * ctx.total_epochs)
        steps = {e for e in range(1, last + 1) if e % self.every == 0}
        return last, steps

    def on_train_start(self, ctx: TrainContext) -> None:
        self._acc, self._count = None, 0

    def on_batch_end(self, ctx: TrainContext, out: RateOutput) -> None:
        if bool(self.frozen):
            return
        folded = self._fold(out.y_hat.detach().float())
        self._acc = folded if self._acc is None else self._acc + folded
        self._count += 1

    def on_epoch_end(self, ctx: TrainContext) -> None:
        if bool(self.frozen):
            return
        done = ctx.epoch + 1
        last, steps = self._plan(ctx)
        if done in steps or done == last:
            self.admm_step()
            ctx.log["admm_step"] = done
        if done == last and last < ctx.total_epochs:
            self.frozen.fill_(True)  # masked fine-tuning from here on

    def on_train_end(self, ctx: TrainContext) -> None:
        if not bool(self.projected):
            self.admm_step()
        self.frozen.fill_(True)

    def train_state(self) -> dict[str, Any]:
        # The mean code since the last ADMM step: an epoch-end checkpoint falls inside a period.
        return {"acc": self._acc, "count": self._count}

    def load_train_state(self, state: Mapping[str, Any]) -> None:
        acc = state.get("acc")
        self._acc = None if acc is None else acc.to(self.Z.device)
        self._count = int(state.get("count", 0))

    def extra_state_info(self) -> dict[str, Any]:
        return {
            "template_kept": float(self.template.float().mean()),
            "grid": self.grid,
            "projected": bool(self.projected),
        }


@hookimpl
def codec_register_rates() -> list[type[Rate]]:
    return [ADMMRate]
