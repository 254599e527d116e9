"""Decoder contract: the synthesis transform."""

from __future__ import annotations

import abc
from typing import ClassVar

import torch

from codec_lab.corelib.contracts.base import Component

__all__ = ["Decoder"]


class Decoder(Component):
    """Synthesis transform ``y_hat -> x_hat``.

    The builder passes ``latent_channels`` (the encoder's) to the constructor, and, when
    the decoder has the encoder's name, the encoder's architecture keys too.
    """

    kind: ClassVar[str] = "decoder"

    @abc.abstractmethod
    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Map the (B, C, h, w) decoder input to images (B, 3, h·f, w·f), nominally in [0, 1].

        Not clamped here (CompressAI's convention); ``Codec.decompress`` clamps.
        """
