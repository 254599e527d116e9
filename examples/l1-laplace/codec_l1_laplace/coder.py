"""``laplace-static``: a static per-channel discretized Laplace model, rANS-coded.

Each channel of each stream gets a Laplace density over its symbols, ``p(s) = F(s + ½) −
F(s − ½)`` (the two tails folded into the first and last symbol), with location μ and scale b
**counted** on the training codes after training: μ is the channel's median symbol and b the
mean |s − μ| (the maximum-likelihood estimates), at least ``min_scale``. Two parameters per
channel instead of a histogram's K − 1: it generalises from few training images and suits the
peaked, symmetric latent an L1 penalty leaves.

How the probabilities stay exact between encoder and decoder: the density is turned once into
integer frequencies summing to exactly 2^20 (every symbol at least 1, so any symbol stays
codable), stored as a buffer with the model, and both sides code with those integers — the
exact dyadic probabilities ``freq / 2^20`` through constriction's ``AnsCoder`` and
``Categorical(perfect=False)`` (the family the built-in coders use; ``perfect`` changes the
bitstream, so it is always given). No float is recomputed at decode time, so a file decodes
bit-exactly in another process or on another machine.

During training the frequencies follow the codes (a moving average of the per-channel
histogram, refitted each step), so the likelihoods the codec reports — the probabilities the
real coder would use — give an honest running bpp estimate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import constriction
import numpy as np
import torch
from torch import nn

from codec_lab.contracts import Component, Context, EntropyCoder, SetupContext, Stream, StreamSpec
from codec_lab.errors import BitstreamError, ConfigError

__all__ = ["PRECISION", "LaplaceStaticCoder", "integer_frequencies", "laplace_pmf"]

PRECISION = 20
"""Frequencies sum to ``2**PRECISION``."""


def laplace_pmf(loc: torch.Tensor, scale: torch.Tensor, k: int) -> torch.Tensor:
    """(C, K) float64 probabilities of symbols 0..K−1 under Laplace(loc, scale) per channel,
    the mass below ½ and above K − 1.5 folded into the end symbols."""
    edges = torch.arange(k + 1, dtype=torch.float64, device=loc.device) - 0.5  # K + 1 bin edges
    z = (edges[None, :] - loc[:, None]) / scale[:, None]
    cdf = torch.where(z < 0, 0.5 * torch.exp(z.clamp(max=0)), 1 - 0.5 * torch.exp(-z.clamp(min=0)))
    cdf[:, 0], cdf[:, -1] = 0.0, 1.0
    return (cdf[:, 1:] - cdf[:, :-1]).clamp_min(0)


def integer_frequencies(p: torch.Tensor, precision: int = PRECISION) -> torch.Tensor:
    """Integer frequencies (…, K), int64, each ≥ 1, summing to ``2**precision``: ``1 + floor(p ·
    (2^P − K))``, the remainder to the most probable symbol. Depends only on ``p``'s bits."""
    total = 1 << precision
    k = p.shape[-1]
    freq = 1 + torch.floor(p * (total - k)).to(torch.int64)
    rest = total - freq.sum(-1, keepdim=True)
    return freq.scatter_add(-1, freq.argmax(-1, keepdim=True), rest)


class _ChannelLaplace(nn.Module):
    """One stream's model: counts, μ, b and the integer frequencies, all buffers."""

    def __init__(self, channels: int, alphabet: int, min_scale: float) -> None:
        super().__init__()
        self.alphabet, self.min_scale = alphabet, min_scale
        self.register_buffer("counts", torch.zeros(channels, alphabet, dtype=torch.float64))
        self.register_buffer("loc", torch.full((channels,), (alphabet - 1) / 2, dtype=torch.float64))
        self.register_buffer("scale", torch.full((channels,), max(alphabet / 8, min_scale),
                                                 dtype=torch.float64))  # fmt: skip
        self.register_buffer("freq", integer_frequencies(laplace_pmf(self.loc, self.scale, alphabet)))

    def refit(self) -> None:
        """μ = median, b = mean |s − μ| of the counted symbols (channels never seen keep theirs)."""
        counts = self.counts
        total = counts.sum(1)
        seen = total > 0
        if not bool(seen.any()):
            return
        symbols = torch.arange(self.alphabet, dtype=torch.float64, device=counts.device)
        cum = counts.cumsum(1)
        median = (cum < total[:, None] / 2).sum(1).clamp(max=self.alphabet - 1).to(torch.float64)
        spread = (counts * (symbols[None] - median[:, None]).abs()).sum(1) / total.clamp_min(1e-12)
        self.loc.copy_(torch.where(seen, median, self.loc))
        self.scale.copy_(torch.where(seen, spread.clamp_min(self.min_scale), self.scale))
        self.freq.copy_(integer_frequencies(laplace_pmf(self.loc, self.scale, self.alphabet)))


def _histogram(stream: Stream) -> torch.Tensor:
    """(C, K) counts of the transmitted symbols of a (B, C, H, W) or (C, H, W) stream."""
    sym = stream.symbols.reshape(-1, *stream.symbols.shape[-3:])
    mask = stream.full_mask().reshape(sym.shape)
    c, k = sym.shape[1], stream.spec.alphabet
    chan = torch.arange(c, device=sym.device).view(1, c, 1, 1).expand_as(sym)
    idx = (chan * k + sym.clamp(0, k - 1))[mask]
    return torch.bincount(idx.cpu(), minlength=c * k).view(c, k).to(torch.float64)


class LaplaceStaticCoder(EntropyCoder):
    """Static per-channel discretized Laplace model, fitted after training, rANS-coded.

    Args:
        min_scale: smallest Laplace scale b, in symbols (keeps an all-zero channel codable
            and its certain zero near, not at, zero bits).
        momentum: weight of the past in the training-time moving average of the counts.
    """

    name = "laplace-static"
    summary = "static per-channel discretized Laplace (median, mean |s - median|), rANS-coded"
    version = "0.1"
    fitting = "counted"  # fit_begin / fit_observe (each training image) / fit_end
    likelihoods_exact = True  # likelihoods() are the integer frequencies coded with

    def __init__(self, min_scale: float = 0.05, momentum: float = 0.9) -> None:
        super().__init__()
        if not min_scale > 0:
            raise ConfigError(f"laplace-static: min_scale must be > 0, got {min_scale}")
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"laplace-static: momentum must be in [0, 1), got {momentum}")
        self.min_scale, self.momentum = min_scale, momentum
        self.models = nn.ModuleDict()

    def check_composition(self, parts: Mapping[str, Component]) -> str | None:
        if parts["quantizer"].alphabet_size is None:
            return "laplace-static needs a quantizer with a finite alphabet (e.g. stochastic)"
        return None

    def setup(self, ctx: SetupContext) -> None:
        # One model per stream, created here: a fresh codec loads any state dict of this
        # composition (models.<stream>.freq etc.).
        for spec in ctx.specs:
            if spec.alphabet is None:
                raise ConfigError(f"laplace-static: stream {spec.name!r} has no finite alphabet",
                                  "choose a quantizer with a finite alphabet (e.g. stochastic)")
            self.models[spec.name] = _ChannelLaplace(spec.channels, spec.alphabet, self.min_scale)
        self.register_buffer("is_fitted", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------ model
    def likelihoods(self, stream: Stream, context: Context | None = None) -> torch.Tensor:
        model = self.models[stream.spec.name]
        if self.training:  # follow the codes, so the estimated bpp stays honest while training
            with torch.no_grad():
                model.counts.mul_(self.momentum).add_(_histogram(stream).to(model.counts.device))
                model.refit()
        freq = model.freq.to(stream.symbols.device)
        sym = stream.symbols.clamp(0, freq.shape[1] - 1)
        chan = torch.arange(freq.shape[0], device=sym.device).view(-1, 1, 1).expand(sym.shape[-3:])
        p = freq[chan.expand_as(sym), sym].to(torch.float32) / float(1 << PRECISION)
        return torch.where(stream.full_mask(), p, torch.ones_like(p))

    def fit_begin(self) -> None:
        for model in self.models.values():
            model.counts.zero_()

    def fit_observe(self, streams: Sequence[Stream]) -> None:
        for s in streams:
            counts = self.models[s.spec.name].counts
            counts.add_(_histogram(s).to(counts.device))

    def fit_end(self) -> None:
        for model in self.models.values():
            model.refit()
        self.is_fitted.fill_(True)

    @property
    def fitted(self) -> bool:
        return bool(self.is_fitted)

    def max_symbols(self, n_bytes: int, spec: StreamSpec) -> int | None:
        """No bound: on constriction's empty initial ANS state the lowest symbol costs nothing,
        so a stream ending in a run of it fits in a few bytes; a bound would refuse such files."""
        return None

    def extra_state_info(self) -> dict[str, float]:
        return {f"scale_{name}": round(float(m.scale.mean()), 4) for name, m in self.models.items()}

    # ------------------------------------------------------------------ coding
    def _categoricals(self, name: str) -> list[constriction.stream.model.Categorical]:
        probs = self.models[name].freq.cpu().numpy().astype(np.float64) / float(1 << PRECISION)
        return [constriction.stream.model.Categorical(p, perfect=False) for p in probs]

    def encode(self, stream: Stream, context: Context | None = None) -> bytes:
        sym, mask = stream.symbols.cpu(), stream.full_mask().cpu()
        sent_all = sym[mask]
        if sent_all.numel() and (int(sent_all.min()) < 0 or int(sent_all.max()) >= stream.spec.alphabet):
            raise ValueError(f"symbols of stream {stream.spec.name!r} outside its alphabet")
        models = self._categoricals(stream.spec.name)
        coder = constriction.stream.stack.AnsCoder()
        # ANS is a stack: push the channels last-first so that the decoder pops them in order.
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
            raise BitstreamError(f"stream {spec.name!r} has a length not a multiple of 4 bytes",
                                 "the file is damaged")  # fmt: skip
        full = torch.ones(shape, dtype=torch.bool) if mask is None else mask.expand(shape).cpu()
        out = torch.zeros(shape, dtype=torch.int64)
        if not bool(full.any()):
            return out
        try:
            coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
            models = self._categoricals(spec.name)
            for c in range(shape[0]):
                n = int(full[c].count_nonzero())
                if n:
                    out[c][full[c]] = torch.from_numpy(coder.decode(models[c], n).astype(np.int64))
        except ValueError as e:  # constriction refuses malformed data
            raise BitstreamError(f"stream {spec.name!r} is not a valid ANS stream: {e}",
                                 "the file is damaged") from e
        return out
