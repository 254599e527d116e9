"""``stochastic``: stochastic rounding to a bounded integer alphabet (CAE-ADMM §1.4, A8).

Training: ``floor(y) + 1`` with probability ``y - floor(y)``, else ``floor(y)`` — an unbiased
generalisation of Toderici's stochastic binarization — with a straight-through gradient.
Evaluation: deterministic rounding, so reconstructions and file sizes are reproducible
(the authors' code rounds stochastically at test time too; we do not, per A8).

The latent is divided by the quantization ``step`` and clamped to ``[-bound, bound]``, so the
alphabet is finite: ``K = 2·bound + 1`` symbols, symbol = round(y / step) + bound, decoder
value = (symbol − bound)·step. A step below 1 gives the decoder finer values without the
encoder having to learn a large latent scale through its last BatchNorm.
"""

from __future__ import annotations

import torch

from codec_lab import hookimpl
from codec_lab.contracts import Quantizer
from codec_lab.errors import ConfigError

__all__ = ["StochasticQuantizer"]


class StochasticQuantizer(Quantizer):
    """Stochastic rounding (train) / rounding (eval) to integers in ``[-bound, bound]``.

    Args:
        bound: largest magnitude kept, in steps; the alphabet has ``2·bound + 1`` symbols.
        step: quantization step (the decoder value of one symbol unit).
    """

    name = "stochastic"
    summary = "stochastic rounding in training (straight-through), rounding at test"
    version = "0.1"

    def __init__(self, bound: int = 15, step: float = 1.0) -> None:
        super().__init__()
        if not 1 <= bound <= 32767:
            raise ConfigError(f"stochastic: bound must be in [1, 32767], got {bound}")
        if not step > 0:
            raise ConfigError(f"stochastic: step must be > 0, got {step}")
        self.bound, self.step = bound, step
        self.alphabet_size = 2 * bound + 1
        self.grid_step = step

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = (y / self.step).clamp(-self.bound, self.bound)
        with torch.no_grad():
            if self.training:
                floor = torch.floor(y)
                up = (torch.rand_like(y) < (y - floor)).to(y.dtype)
                target = floor + up
            else:
                target = torch.round(y)
        # Straight-through: the value is exactly ``target`` (y - y is exactly 0), the
        # gradient is the identity.
        return (target + (y - y.detach())) * self.step

    def to_symbols(self, y_tilde: torch.Tensor) -> torch.Tensor:
        units = torch.round(y_tilde.detach() / self.step).to(torch.int64)
        return units.clamp(-self.bound, self.bound) + self.bound

    def from_symbols(self, symbols: torch.Tensor) -> torch.Tensor:
        return (symbols - self.bound).to(torch.float32) * self.step


@hookimpl
def codec_register_quantizers() -> list[type[Quantizer]]:
    return [StochasticQuantizer]
