"""``histogram``: a static per-channel symbol histogram, coded with rANS (constriction).

The zeroth-order baseline coder. After training, the engine fits one histogram per stream
and channel on the training codes; the histogram is turned into integer frequencies that
sum to exactly 2^20 (every symbol at least 1, so any symbol stays codable) and stored with
the model. Encoder and decoder read the same stored integers, so coding is exact on any
machine. During training the histogram follows the codes with an exponential moving
average, so the likelihoods in ``forward`` — the probabilities the real coder would use —
give an honest running estimate of the bit rate.

Symbols of each stream are coded channel by channel in raster order, skipping masked
positions, with constriction's ``AnsCoder`` and ``Categorical(perfect=False)`` models fed
exact dyadic probabilities ``freq / 2^20``.
"""

from __future__ import annotations

from collections.abc import Sequence

import constriction
import numpy as np
import torch

from codec_lab import hookimpl
from codec_lab.contracts import Context, EntropyCoder, SetupContext, Stream, StreamSpec, all_reduce_sum
from codec_lab.errors import BitstreamError, ConfigError
from codec_lab.plugins.coders.common.categorical import quantize_pmf

__all__ = ["HistogramCoder", "integer_frequencies"]

PRECISION = 20


def integer_frequencies(counts: torch.Tensor, precision: int = PRECISION) -> torch.Tensor:
    """Integer frequencies (…, K) summing to ``2**precision``, each at least 1.

    ``counts`` are non-negative weights per symbol; half a count is added to every symbol
    (Krichevsky–Trofimov) so unseen symbols stay cheap but possible.
    """
    k = counts.shape[-1]
    p = (counts.double() + 0.5) / (counts.double().sum(-1, keepdim=True) + 0.5 * k)
    return quantize_pmf(p, precision)


class HistogramCoder(EntropyCoder):
    """Static per-channel histogram + rANS.

    Args:
        momentum: weight of the past in the training-time moving average of the counts.
    """

    name = "histogram"
    summary = "static per-channel symbol histogram fitted after training, rANS-coded"
    version = "0.1"

    def __init__(self, momentum: float = 0.99) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"histogram: momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.specs: dict[str, StreamSpec] = {}

    def check_composition(self, parts):  # type: ignore[no-untyped-def]
        if parts["quantizer"].alphabet_size is None:
            return "histogram needs a quantizer with a finite alphabet (e.g. stochastic)"
        return None

    def setup(self, ctx: SetupContext) -> None:
        for spec in ctx.specs:
            if spec.alphabet is None or spec.alphabet < 1:
                raise ConfigError(f"histogram: stream {spec.name!r} has no finite alphabet")
            self.specs[spec.name] = spec
            shape = (spec.channels, spec.alphabet)
            self.register_buffer(f"counts_{spec.name}", torch.zeros(shape, dtype=torch.float64))
            self.register_buffer(f"freq_{spec.name}", integer_frequencies(torch.zeros(shape)))
        self.register_buffer("is_fitted", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------ model
    def _counts(self, name: str) -> torch.Tensor:
        return getattr(self, f"counts_{name}")

    def _freq(self, name: str) -> torch.Tensor:
        return getattr(self, f"freq_{name}")

    def _histogram(self, stream: Stream) -> torch.Tensor:
        """(C, K) counts of the transmitted symbols of a (B, C, H, W) or (C, H, W) stream."""
        sym = stream.symbols if stream.symbols.dim() == 4 else stream.symbols[None]
        mask = stream.full_mask() if stream.symbols.dim() == 4 else stream.full_mask()[None]
        c, k = sym.shape[1], stream.spec.alphabet
        chan = torch.arange(c, device=sym.device).view(1, c, 1, 1).expand_as(sym)
        idx = (chan * k + sym.clamp(0, k - 1))[mask]
        return torch.bincount(idx, minlength=c * k).view(c, k).to(torch.float64)

    def likelihoods(self, stream: Stream, context: Context | None = None) -> torch.Tensor:
        name = stream.spec.name
        if self.training:
            with torch.no_grad():
                counts = self._counts(name)
                # Distributed builds: the global batch's counts, the same in every process.
                counts.mul_(self.momentum).add_(all_reduce_sum(self._histogram(stream)))
                self._freq(name).copy_(integer_frequencies(counts))
        freq = self._freq(name).to(stream.symbols.device)
        c = freq.shape[0]
        sym = stream.symbols.clamp(0, freq.shape[1] - 1)
        chan = torch.arange(c, device=sym.device).view(c, 1, 1).expand(sym.shape[-3:])
        p = freq[chan.expand_as(sym), sym].to(torch.float32) / float(1 << PRECISION)
        return torch.where(stream.full_mask(), p, torch.ones_like(p))

    def fit_begin(self) -> None:
        for name in self.specs:
            self._counts(name).zero_()

    def fit_observe(self, streams: Sequence[Stream]) -> None:
        for s in streams:
            self._counts(s.spec.name).add_(self._histogram(s))

    def fit_end(self) -> None:
        for name in self.specs:
            self._freq(name).copy_(integer_frequencies(self._counts(name)))
        self.is_fitted.fill_(True)

    @property
    def fitted(self) -> bool:
        return bool(self.is_fitted)

    def max_symbols(self, n_bytes: int, spec: StreamSpec) -> int | None:
        """No bound: constriction's ANS coder starts from an empty state, on which symbol 0 (its
        interval starts at 0) costs nothing, so a stream ending in a run of 0s carries any number
        of symbols in a few bytes (4,096 zeros: 0 bytes). A bound from the bytes would refuse
        such valid files; the decoder's work stays bounded by the header's image size."""
        return None

    # ------------------------------------------------------------------ coding
    def _models(self, name: str) -> list[constriction.stream.model.Categorical]:
        freq = self._freq(name).cpu().numpy().astype(np.float64) / float(1 << PRECISION)
        return [constriction.stream.model.Categorical(f, perfect=False) for f in freq]

    def encode(self, stream: Stream, context: Context | None = None) -> bytes:
        sym, mask = stream.symbols.cpu(), stream.full_mask().cpu()
        if sym.numel() and (int(sym.min()) < 0 or int(sym.max()) >= stream.spec.alphabet):
            raise ValueError(f"symbols of stream {stream.spec.name!r} outside its alphabet")
        models = self._models(stream.spec.name)
        coder = constriction.stream.stack.AnsCoder()
        # ANS is a stack: push the channels last-first so the decoder pops them in order.
        for c in reversed(range(sym.shape[0])):
            sent = sym[c][mask[c]].numpy().astype(np.int32)
            if sent.size:
                coder.encode_reverse(sent, models[c])
        return coder.get_compressed().astype("<u4").tobytes()

    def decode(
        self,
        data: bytes,
        spec: StreamSpec,
        shape: tuple[int, int, int],
        mask: torch.Tensor | None,
        context: Context | None = None,
    ) -> torch.Tensor:
        if len(data) % 4:
            raise BitstreamError(f"stream {spec.name!r} has a length not a multiple of 4 bytes")
        full = torch.ones(shape, dtype=torch.bool) if mask is None else mask.expand(shape).cpu()
        out = torch.zeros(shape, dtype=torch.int64)
        if not bool(full.any()):
            return out
        # Zero words is valid: very likely symbols (e.g. an all-zero map) can take no bits.
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        try:
            coder = constriction.stream.stack.AnsCoder(words)
            models = self._models(spec.name)
            for c in range(shape[0]):
                n = int(full[c].count_nonzero())
                if n:
                    out[c][full[c]] = torch.from_numpy(coder.decode(models[c], n).astype(np.int64))
        except ValueError as e:  # constriction refuses malformed data (e.g. a trailing zero word)
            raise BitstreamError(f"stream {spec.name!r} is not a valid ANS stream: {e}",
                                 "the file is damaged") from e
        return out


@hookimpl
def codec_register_coders() -> list[type[EntropyCoder]]:
    return [HistogramCoder]
