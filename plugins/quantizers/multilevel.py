"""``multilevel`` and ``binary``: the quantizers of Li et al.'s content-weighted codec.

``multilevel`` is the TPAMI channel-wise learned multi-valued quantizer ("MLQuant",
methods-spec §2.3, A15). Channel ``c`` has ``L`` levels built from values ``θ_{c,0..L-1}``::

    q_{c,0} = θ_{c,0},    q_{c,j} = q_{c,j-1} + exp(θ_{c,j})      (monotone by construction)

initialised to the mid-points ``{1/(2L), 3/(2L), ...}`` of (0, 1), the range of the sigmoid
encoder output. Every element takes the value of its channel's nearest level (ties go up, as
the Caffe layer's walk does); the gradient to the input is the identity (straight-through).

The levels are **not** trained by the task loss: as in the authors' code, they follow the
gradient of the quantization error ``½(y - x)²`` (a Lloyd / k-means step by SGD), taken inside
each training forward. ``θ`` is therefore a buffer, not an ``nn.Parameter``, so the main
optimizer never touches it. Caffe scales that gradient by ``lr_mult = 100`` under the solver's
Adam; under Adam a multiplier sets the step size independently of the gradient's scale, so it
has no meaning here. We take a plain SGD step ``θ -= level_lr · grad`` with the gradient
averaged over the channel's elements instead. Decayed per-level usage counts drive the
collapse repair of §2.3 every ``repair_every`` training forwards.

``binary`` is the CVPR quantizer: threshold the sigmoid output at 0.5, identity gradient.

Symbols are level indices ``k ∈ [0, L)`` (``{0, 1}`` for ``binary``). The channel axis of a
latent is dim −3, so both the codec's ``(B, C, H, W)`` and a rate's ``(C, h, w)`` work; a tensor
with fewer than 3 dims has no channel axis and uses channel 0's levels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from codec_lab import hookimpl
from codec_lab.contracts import Component, Quantizer, all_reduce_sum
from codec_lab.errors import ConfigError

__all__ = ["BinaryQuantizer", "MultilevelQuantizer"]

_THETA_BOUND = 30.0
"""|θ_j| (j ≥ 1) is kept below this so that no increment exp(θ_j) overflows float32 levels;
it never binds for latents in (0, 1) and the default ``level_lr``."""


_Unflatten = Callable[[torch.Tensor], torch.Tensor]


def _straight_through(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``value`` exactly (``x - x`` is exactly 0 for finite x), with the identity gradient to ``x``."""
    return value + (x - x.detach())


class MultilevelQuantizer(Quantizer):
    """Learned per-channel multi-valued quantizer (TPAMI "MLQuant", §2.3).

    Args:
        levels: L_q, the number of levels per channel and the alphabet size, in [2, 256].
        latent_channels: latent channels C; the builder sets it from the encoder.
        level_lr: SGD step size of the levels on the quantization-error gradient (A15).
        repair_every: training forwards between two runs of the level-collapse repair.
        decay: factor applied to the per-level usage counts at every training forward.
    """

    name = "multilevel"
    summary = "learned per-channel levels (quantization-error SGD), nearest level, straight-through"
    version = "0.1"

    def __init__(
        self,
        levels: int = 8,
        latent_channels: int = 32,
        level_lr: float = 0.01,
        repair_every: int = 200,
        decay: float = 0.999,
    ) -> None:
        super().__init__()
        if not 2 <= levels <= 256:
            raise ConfigError(f"multilevel: levels must be in [2, 256], got {levels}")
        if latent_channels < 1:
            raise ConfigError(f"multilevel: latent_channels must be >= 1, got {latent_channels}",
                              "set it to the encoder's latent_channels")  # fmt: skip
        if not (math.isfinite(level_lr) and level_lr >= 0):
            raise ConfigError(f"multilevel: level_lr must be finite and >= 0, got {level_lr}")
        if repair_every < 1:
            raise ConfigError(f"multilevel: repair_every must be >= 1, got {repair_every}")
        if not 0.0 < decay <= 1.0:
            raise ConfigError(f"multilevel: decay must be in (0, 1], got {decay}")
        self.levels, self.channels = levels, latent_channels
        self.level_lr, self.repair_every, self.decay = level_lr, repair_every, decay
        self.alphabet_size = levels
        theta = torch.full((latent_channels, levels), math.log(1.0 / levels))
        theta[:, 0] = 1.0 / (2 * levels)
        self.register_buffer("theta", theta)
        self.register_buffer("counts", torch.zeros(latent_channels, levels))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def check_composition(self, parts: Mapping[str, Component]) -> str | None:
        encoder = parts.get("encoder")
        have = getattr(encoder, "latent_channels", None)
        if have is not None and have != self.channels:
            return (f"multilevel has latent_channels={self.channels} but the encoder's latent has {have}; "
                    f"set the quantizer's latent_channels to {have}")  # fmt: skip
        return None

    def extra_state_info(self) -> dict[str, float | int]:
        q = self.level_values()
        return {"level_steps": int(self.steps), "level_min": float(q.min()), "level_max": float(q.max())}

    # ------------------------------------------------------------------ levels
    def level_values(self) -> torch.Tensor:
        """The (C, L) levels: ``θ_0`` then a running sum of ``exp(θ_j)``."""
        steps = torch.cat([self.theta[:, :1], self.theta[:, 1:].exp()], dim=1)
        return steps.cumsum(dim=1)

    def _rows(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, _Unflatten]:
        """``t`` as (C', N) rows per channel, the (C', L) levels of those rows, and the inverse."""
        q = self.level_values()
        if t.dim() < 3:
            return t.reshape(1, -1), q[:1], lambda r: r.reshape(t.shape)
        if t.shape[-3] != self.channels:
            raise ValueError(f"multilevel: expected {self.channels} channels (dim -3), got shape "
                             f"{tuple(t.shape)}; set latent_channels to the encoder's")  # fmt: skip
        moved = t.movedim(-3, 0)
        shape = moved.shape
        return moved.reshape(self.channels, -1), q, lambda r: r.reshape(shape).movedim(0, -3)

    @staticmethod
    def _nearest(rows: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Index of the nearest level of each row element; a tie goes to the upper level.

        The Caffe walk: ``k = 0`` below ``q_0``, else the first ``j`` with ``x < q_j`` (``L - 1``
        past the top), minus one when ``x`` is below the mid-point — i.e. the number of
        mid-points ``≤ x``.
        """
        mids = ((q[:, :-1] + q[:, 1:]) / 2).contiguous()
        return torch.searchsorted(mids, rows.to(q.dtype).contiguous(), right=True)

    # ------------------------------------------------------------------ data path
    def forward(self, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            rows, q, back = self._rows(y.detach())
            k = self._nearest(rows, q)
            value = q.gather(1, k)
            if self.training:
                self._learn(rows.to(q.dtype), k, value)
            value = back(value)
        return _straight_through(value, y) if self.training else value

    def to_symbols(self, y_tilde: torch.Tensor) -> torch.Tensor:
        rows, q, back = self._rows(y_tilde.detach())
        return back(self._nearest(rows, q))

    def from_symbols(self, symbols: torch.Tensor) -> torch.Tensor:
        rows, q, back = self._rows(symbols)
        with torch.no_grad():
            return back(q.gather(1, rows.to(torch.int64).clamp(0, self.levels - 1)))

    # ------------------------------------------------------------------ level learning
    @torch.no_grad()
    def _learn(self, rows: torch.Tensor, k: torch.Tensor, value: torch.Tensor) -> None:
        """One SGD step of the levels on mean ½(y - x)², usage counts, and the periodic repair.

        ``∂/∂θ_0 = e`` and ``∂/∂θ_j = e·exp(θ_j)`` for ``1 ≤ j ≤ k``, with ``e = y - x``: the
        gradient of level ``j`` sums the errors of every element at level ``k ≥ j``.
        """
        err = (value - rows).nan_to_num(0.0, 0.0, 0.0)
        per_level = torch.zeros_like(self.theta).scatter_add_(1, k, err.to(self.theta.dtype))
        used = torch.zeros_like(self.counts).scatter_add_(1, k, torch.ones_like(k, dtype=self.counts.dtype))
        # Distributed builds: the levels learn from the whole global batch, the same everywhere.
        per_level, used, n = all_reduce_sum(per_level, used, rows.shape[1])
        if n == 0:
            return
        grad = per_level.flip(1).cumsum(1).flip(1) / n
        grad[:, 1:] *= self.theta[:, 1:].exp()
        if self.level_lr > 0:
            self.theta.sub_(self.level_lr * grad)
            self.theta[:, 1:].clamp_(-_THETA_BOUND, _THETA_BOUND)
        self.counts.mul_(self.decay).add_(used)
        self.steps.add_(1)
        if int(self.steps) % self.repair_every == 0:
            self.repair()

    @torch.no_grad()
    def repair(self) -> None:
        """Level-collapse repair of the authors' code (``ml_quant_check_weight``), per channel.

        1. ``j ≥ 1`` = the highest level with a decayed count > 0 (1 if none): set
           ``θ_{j..L-1} = θ_j − log(L − j)``, spreading the last used increment over the unused
           top levels (the top level lands where level ``j`` was).
        2. Level 0 unused (count < 1): ``θ_0 += exp(θ_1)`` (``q_0`` moves to ``q_1``), then
           ``θ_1, θ_2 ← log((exp θ_1 + exp θ_2)/2)`` (only ``θ_1`` is averaged when L = 2; the
           Caffe code reads past the channel there).
        """
        big_l = self.levels
        used = self.counts[:, 1:] > 0
        idx = torch.arange(1, big_l, device=used.device).expand_as(used)
        top = torch.where(used, idx, torch.ones_like(idx)).amax(dim=1)  # (C,)
        theta = self.theta
        base = theta.gather(1, top[:, None]) - torch.log((big_l - top).to(theta.dtype))[:, None]
        above = torch.arange(big_l, device=theta.device)[None, :] >= top[:, None]
        theta.copy_(torch.where(above, base, theta))
        dead = self.counts[:, 0] < 1
        if bool(dead.any()):
            inc = theta[dead, 1:3].exp()
            theta[dead, 0] += inc[:, 0]
            theta[dead, 1:3] = inc.mean(dim=1, keepdim=True).log().expand_as(inc)


class BinaryQuantizer(Quantizer):
    """Binarizer of the CVPR content-weighted codec: ``x > threshold``, identity gradient.

    Training and evaluation give the same hard values, so no train/test mismatch.

    Args:
        threshold: binarization threshold for latents in (0, 1), itself in (0, 1).
    """

    name = "binary"
    summary = "threshold at 0.5 to {0, 1} with a straight-through (identity) gradient"
    version = "0.1"

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"binary: threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self.alphabet_size = 2

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        value = (y.detach() > self.threshold).to(torch.float32)
        return _straight_through(value, y) if self.training else value

    def to_symbols(self, y_tilde: torch.Tensor) -> torch.Tensor:
        return (y_tilde.detach() >= 0.5).to(torch.int64)

    def from_symbols(self, symbols: torch.Tensor) -> torch.Tensor:
        return (symbols != 0).to(torch.float32)


@hookimpl
def codec_register_quantizers() -> list[type[Quantizer]]:
    return [MultilevelQuantizer, BinaryQuantizer]
