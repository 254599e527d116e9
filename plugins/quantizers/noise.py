"""``noise``: additive uniform noise in training, rounding at test (Ballé et al. 2017).

The training relaxation of the entropy-estimator codecs: ``y + U(-½, ½)`` has the density of
the rounded latent convolved with a unit box, so −log2 of its likelihood is a differentiable
rate. Symbols are the rounded values themselves: signed integers with no bound (the coder
escapes outliers), on a unit grid.
"""

from __future__ import annotations

import torch

from codec_lab import hookimpl
from codec_lab.contracts import Quantizer

__all__ = ["NoiseQuantizer"]


class NoiseQuantizer(Quantizer):
    """Uniform noise (train) / rounding (eval) to unbounded integers."""

    name = "noise"
    summary = "additive uniform noise in training, rounding at test (unbounded integers)"
    version = "0.1"
    alphabet_size = None
    grid_step = 1.0

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.training:
            return y + torch.empty_like(y).uniform_(-0.5, 0.5)
        return torch.round(y)

    def to_symbols(self, y_tilde: torch.Tensor) -> torch.Tensor:
        return torch.round(y_tilde.detach()).to(torch.int64)

    def from_symbols(self, symbols: torch.Tensor) -> torch.Tensor:
        return symbols.to(torch.float32)


@hookimpl
def codec_register_quantizers() -> list[type[Quantizer]]:
    return [NoiseQuantizer]
