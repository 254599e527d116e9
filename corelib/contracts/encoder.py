"""Encoder contract: the analysis transform."""

from __future__ import annotations

import abc
from typing import ClassVar

import torch

from codec_lab.corelib.contracts.base import Component

__all__ = ["Encoder"]


class Encoder(Component):
    """Analysis transform ``x -> y``.

    Attributes:
        latent_channels: channels C of ``y``.
        downsampling_factor: ``y`` is (C, H/f, W/f) for an (3, H, W) input; inputs are
            padded to a multiple of ``f`` before coding.
        min_input_size: smallest side the network accepts (e.g. reflection padding needs
            feature maps wider than the pad); smaller images are padded up to it.
        features: the keys :meth:`forward` returns, ``"y"`` first; rate plugins that need
            an extra feature (``"importance"``) check for it when the codec is composed.
    """

    kind: ClassVar[str] = "encoder"
    latent_channels: int
    downsampling_factor: int
    min_input_size: ClassVar[int] = 1
    features: ClassVar[tuple[str, ...]] = ("y",)

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Map images (B, 3, H, W) in [0, 1] to features.

        Returns:
            A dict with at least ``"y"``, the (B, C, H/f, W/f) latent. Encoders may add
            named features that a rate plugin needs (e.g. ``"importance"``).
        """
