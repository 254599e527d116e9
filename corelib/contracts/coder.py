"""Entropy-coder contract: lossless symbols ⇄ bytes with its own probability model."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal

import torch

from codec_lab.corelib.contracts.base import Component, SetupContext
from codec_lab.corelib.streams import Stream, StreamSpec

__all__ = ["Context", "EntropyCoder", "Fitting"]

Context = Mapping[str, Stream]
"""The streams already coded for the same image(s), by name, in coding order."""

Fitting = Literal["counted", "trained", "none"]
"""How an entropy coder's model is fitted after the transform trains (:attr:`EntropyCoder.fitting`)."""


class EntropyCoder(Component):
    """Codes masked streams to bytes and back, and gives honest likelihoods.

    Rules every coder must keep:

    * the decoder computes every probability with exactly the computation the encoder
      used (same shapes, same order), on integer frequencies, never on raw floats;
    * positions the mask excludes cost no bits and are never read;
    * :meth:`likelihoods` is what the real coder spends: exactly the probabilities it codes
      with (``likelihoods_exact = True``: static tables, context networks) or, for adaptive
      coders whose probabilities depend on the coding order, an estimate within
      ``likelihood_tolerance`` of the real bits (``corelib.testing.check_coder`` holds a
      coder to its claim).

    Conditioning: every method gets ``context``, the streams already coded for the same
    image (side streams first, e.g. an importance map before the code), so a coder may
    condition a stream on an earlier one. The decoder receives exactly what the encoder saw:
    the earlier streams' symbols and masks.

    Shapes: :meth:`likelihoods` and :meth:`loss` see batches, symbols (B, C, H, W);
    :meth:`encode` and :meth:`decode` one image, (C, h, w). Masks are bool and broadcast to
    the symbols' shape (a (C, 1, 1) mask selects whole channels). Everything the coder
    owns (tables, networks) is created in :meth:`setup` as buffers or parameters.

    Fitting (``fitting``):

    * ``"counted"``: after training the engine calls :meth:`fit_begin`, :meth:`fit_observe`
      for each training image's hard streams, then :meth:`fit_end` (static histograms);
    * ``"trained"``: the engine runs a stage with its own optimizer over the coder's
      parameters, minimizing :meth:`fit_loss` on hard streams of training crops
      (``train.coder_*`` settings), with progress, log and checkpoint, between
      :meth:`fit_begin` and :meth:`fit_end` (context networks);
    * ``"none"``: nothing to fit (a coder using the rate's density; an adaptive coder).
    """

    kind: ClassVar[str] = "coder"
    fitting: ClassVar[Fitting] = "counted"
    """How the model is fitted after the transform is trained (see the class docstring)."""
    likelihoods_exact: ClassVar[bool] = True
    """True: :meth:`likelihoods` are the probabilities coded with. False: an estimate."""
    likelihood_tolerance: ClassVar[float] = 0.0
    """For an estimate: the largest relative gap between real and estimated bits."""
    default_fit_steps: ClassVar[int] = 500
    """Optimizer steps of a ``"trained"`` coder's stage when ``train.coder_steps`` is null."""
    max_stream_symbols: ClassVar[int | None] = None
    """The most positions (C·h·w, masked or not) one stream of one coding tile may hold, or
    None. For a coder whose work grows with positions rather than bytes (a symbol-by-symbol
    context model, whose rANS can carry thousands of likely symbols in a byte): the default
    tile is chosen within it, a larger ``--tile`` is refused, and a file whose header claims
    more is refused before decoding, so a damaged size cannot make the decoder run for hours."""

    @abc.abstractmethod
    def setup(self, ctx: SetupContext) -> None:
        """Create the probability model (parameters, buffers) for ``ctx.specs``.

        ``ctx.parts["rate"]`` is the codec's rate; coders that code with its density
        models (:meth:`Rate.entropy_models`) keep them in a plain dict, out of the module
        tree, so their parameters are saved once, under the rate.
        """

    @abc.abstractmethod
    def likelihoods(self, stream: Stream, context: Context | None = None) -> torch.Tensor:
        """Probabilities of ``stream.symbols`` (B, C, H, W) under the model (1 where masked).

        A coder that learns statistics here in training (a running histogram) sees only its
        process's shard in a distributed build: sum them with
        :func:`~codec_lab.contracts.all_reduce_sum` before they update a buffer, as
        :meth:`Rate.on_epoch_end` explains.
        """

    @abc.abstractmethod
    def encode(self, stream: Stream, context: Context | None = None) -> bytes:
        """Code one image's stream, symbols (C, h, w), skipping masked positions."""

    @abc.abstractmethod
    def decode(
        self,
        data: bytes,
        spec: StreamSpec,
        shape: tuple[int, int, int],
        mask: torch.Tensor | None,
        context: Context | None = None,
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

    def loss(self, streams: Sequence[Stream]) -> torch.Tensor | None:
        """Loss to train the coder jointly with the transform, or None (fitted after it).

        ``streams`` are one batch's (B, C, H, W) streams in coding order.
        """
        return None

    def fit_loss(self, streams: Sequence[Stream]) -> torch.Tensor:
        """The loss a ``"trained"`` coder's stage minimizes on one batch of hard streams
        (transform frozen), e.g. the bits per transmitted symbol under the model."""
        raise NotImplementedError(f"coder {type(self).name!r} declares fitting='trained' but "
                                  "does not implement fit_loss()")

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
