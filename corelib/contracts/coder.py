"""Entropy-coder contract: lossless symbols ⇄ bytes with its own probability model."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar

import torch

from codec_lab.corelib.contracts.base import Component
from codec_lab.corelib.contracts.rate import Rate
from codec_lab.corelib.streams import Stream, StreamSpec

__all__ = ["EntropyCoder"]


class EntropyCoder(Component):
    """Codes masked streams to bytes and back, and gives honest likelihoods.

    Rules every coder must keep:

    * the decoder computes every probability with exactly the computation the encoder
      used (same shapes, same order), on integer frequencies, never on raw floats;
    * positions the mask excludes cost no bits and are never read;
    * :meth:`likelihoods` is the probability the real coder assigns (so the estimated bpp
      of ``Codec.forward`` is what a file would cost, up to termination bytes).

    Life cycle: the builder calls :meth:`configure` with the rate plugin's stream specs,
    then :meth:`connect` with the rate plugin; training may call :meth:`loss` (coders
    trained jointly); after training the engine fits the model on the training codes
    (:meth:`fit_begin`, :meth:`fit_observe`, :meth:`fit_end`) unless ``fits_on_codes`` is
    False.
    """

    kind: ClassVar[str] = "coder"
    fits_on_codes: ClassVar[bool] = True
    """Whether the training engine should run the fit stage (False: nothing to fit)."""

    @abc.abstractmethod
    def configure(self, specs: Sequence[StreamSpec]) -> None:
        """Create the probability model (parameters, buffers) for these streams."""

    @abc.abstractmethod
    def likelihoods(self, stream: Stream) -> torch.Tensor:
        """Probabilities of ``stream.symbols`` under the coder's model (1 where masked)."""

    @abc.abstractmethod
    def encode(self, stream: Stream) -> bytes:
        """Code one image's stream, symbols (C, h, w), skipping masked positions."""

    @abc.abstractmethod
    def decode(
        self, data: bytes, spec: StreamSpec, shape: tuple[int, int, int], mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Inverse of :meth:`encode`: the (C, h, w) int64 symbols (0 where masked)."""

    def max_symbols(self, n_bytes: int, spec: StreamSpec) -> int | None:
        """The most symbols ``n_bytes`` of stream ``spec`` can carry under this model, or None.

        The decoder refuses a file whose header claims more transmitted symbols than this
        before decoding anything, so a damaged size cannot make it allocate without bound.
        A static model gives ``8 · n_bytes / min_bits`` plus its termination slack, where
        ``min_bits`` is the cost of its most probable symbol.
        """
        return None

    def connect(self, rate: Rate) -> None:
        """Called once after :meth:`configure` with the codec's rate plugin.

        Coders that code with the rate's own density models (:meth:`Rate.entropy_models`)
        keep a reference here; keep it out of the module tree (no submodule), so the
        model's parameters are saved once, under the rate.
        """

    def loss(self, streams: Sequence[Stream]) -> torch.Tensor | None:
        """Loss to train the coder jointly with the transforms, or None (fitted later)."""
        return None

    def fit_begin(self) -> None:
        """Start fitting the model on training codes (reset statistics)."""

    def fit_observe(self, streams: Sequence[Stream]) -> None:
        """Accumulate statistics from one batch of hard (eval-mode) streams."""

    def fit_end(self) -> None:
        """Finish fitting: freeze the model used for coding."""

    @property
    def fitted(self) -> bool:
        """Whether the coder has been fitted (coding an unfitted model still works)."""
        return True
