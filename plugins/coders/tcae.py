"""``tcae`` and ``inclined-tcae``: learned context models over trimmed convolutions.

The entropy coders of the content-weighted compression paper (methods-spec §2.5–§2.6,
A16–A18). One :class:`ContextNetwork` per stream predicts a categorical distribution over
the stream's alphabet for every symbol from the symbols coded before it; the probabilities
are quantized to integer frequencies and rANS-coded (constriction).

* ``inclined-tcae`` (the TPAMI coders, masks 5/6) orders symbols by plane ``c + h + w``:
  every symbol of a plane depends only on earlier planes, so decoding takes C + H + W − 2
  batched steps, each computing every layer only where it changes — about one network pass.
* ``tcae`` (masks GMA/GMB, the TCAE papers) orders them channel by channel, raster inside a
  channel, and decodes symbol by symbol: exact, but C·H·W steps. It is the slow reference
  the inclined order is measured against, not a coder for everyday use.

Both sides compute every probability through the same step-by-step path
(:mod:`…common.wavefront`), each probability computed whole by one thread in a fixed order
(never torch's multi-threaded products, whose rounding depends on the thread count), so a file
decodes at any thread count; ``inclined-tcae`` shares a plane's blocks among the caller's
threads. A stream is conditioned on what
its decoder knows before reading it — its mask, and the streams coded before it (the
importance map for the code) — through an ordinary convolution added to the first layer.
Masked positions are never coded and read as 0. ``likelihoods`` (training, estimates) use one
full-tensor pass of the same network, quantized the same way.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from codec_lab import hookimpl
from codec_lab.contracts import Component, Context, EntropyCoder, SetupContext, Stream, StreamSpec
from codec_lab.errors import BitstreamError, ConfigError
from codec_lab.plugins.coders.common.categorical import (
    PRECISION,
    AnsReader,
    encode_symbols,
    frequencies,
    probabilities,
)
from codec_lab.plugins.coders.common.trimmed import ContextNetwork, Order

__all__ = ["InclinedTcaeCoder", "TcaeCoder"]

PRESETS = {
    "quick": {"width": 2, "map_width": 8, "res_blocks": 0},
    "cpu": {"width": 4, "map_width": 16, "res_blocks": 1},
    "paper": {"width": 8, "map_width": 32, "res_blocks": 3},
}
"""Network sizes per training preset (``paper``: the TPAMI coders, 256 hidden channels for a
32-channel code and a 32-channel map network)."""

MAX_ALPHABET = 256


@contextlib.contextmanager
def _one_thread() -> Iterator[int]:
    """Run torch's part of the probability path single-threaded (the same bits at any thread
    count); yields the caller's thread count, which the wavefront kernel may use (its results
    do not depend on it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            yield before
    finally:
        torch.set_num_threads(before)


class TcaeCoder(EntropyCoder):
    """Trimmed-convolution context coder, channel-major order (the slow, exact reference).

    Args:
        width: channels per code channel in the hidden layers (TPAMI: 8).
        map_width: hidden channels of the network of a one-channel stream such as the
            importance map (TPAMI: 32).
        kernel: kernel size of the trimmed convolutions (TPAMI: 5).
        out_kernel: kernel size of the output layer (TPAMI: 3).
        res_blocks: residual blocks after the first two layers (TPAMI: 3).
        condition: condition each stream on its mask and the streams coded before it.
    """

    name = "tcae"
    summary = "TCAE context model, channel-major order, decoded symbol by symbol (slow reference)"
    version = "0.2"  # 0.2: the wavefront's compiled kernel (sums in another order than 0.1: other files)
    fitting = "trained"
    default_fit_steps = 500
    presets = PRESETS
    order: ClassVar[Order] = "raster"
    max_stream_symbols: ClassVar[int | None] = 2**15
    """32,768 positions: a 256-pixel tile of a 32-channel code, about 10 s to decode symbol by
    symbol with the paper-size network on one core. Larger images code in such tiles (the
    default tile is chosen within it), and a file claiming more is refused unread."""

    def __init__(
        self,
        width: int = 8,
        map_width: int = 32,
        kernel: int = 5,
        out_kernel: int = 3,
        res_blocks: int = 3,
        condition: bool = True,
    ) -> None:
        super().__init__()
        sizes = (("width", width, 1), ("map_width", map_width, 1), ("res_blocks", res_blocks, 0))
        for key, value, low in sizes:
            if value < low:
                raise ConfigError(f"{self.name}: {key} must be at least {low}, got {value}")
        for key, value in (("kernel", kernel), ("out_kernel", out_kernel)):
            if value < 1 or value % 2 == 0:
                raise ConfigError(f"{self.name}: {key} must be odd and positive, got {value}")
        self.width, self.map_width, self.kernel, self.out_kernel = width, map_width, kernel, out_kernel
        self.res_blocks, self.condition = res_blocks, condition
        self.specs: dict[str, StreamSpec] = {}
        self.context_of: dict[str, list[StreamSpec]] = {}

    def check_composition(self, parts: Mapping[str, Component]) -> str | None:
        quantizer = parts["quantizer"]
        if quantizer.alphabet_size is None:
            named = getattr(type(quantizer), "name", type(quantizer).__name__)
            return (f"{self.name} predicts a distribution over a finite alphabet, and quantizer "
                    f"{named!r} has none: build the run with --quantizer "
                    "stochastic (it clips the symbols to ±bound, also under rate entropy) or "
                    "multilevel")  # fmt: skip
        return None

    def setup(self, ctx: SetupContext) -> None:
        self.nets = torch.nn.ModuleDict()
        earlier: list[StreamSpec] = []
        for spec in ctx.specs:
            if spec.alphabet is None or not 2 <= spec.alphabet <= MAX_ALPHABET:
                raise ConfigError(
                    f"{self.name}: stream {spec.name!r} has alphabet {spec.alphabet}; the context "
                    f"model needs a finite one of 2..{MAX_ALPHABET} symbols",
                    "use a quantizer with a finite alphabet (stochastic, multilevel)",
                )  # fmt: skip
            self.specs[spec.name] = spec
            self.context_of[spec.name] = list(earlier) if self.condition else []
            cond = (spec.channels + sum(s.channels for s in earlier)) if self.condition else 0
            self.nets[spec.name] = ContextNetwork(
                spec.channels, spec.alphabet,
                width=self.map_width if spec.channels == 1 else self.width,
                kernel=self.kernel, out_kernel=self.out_kernel, res_blocks=self.res_blocks,
                order=self.order, condition_channels=cond,
            )  # fmt: skip
            earlier.append(spec)
        self.register_buffer("is_fitted", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def _values(symbols: torch.Tensor, mask: torch.Tensor, alphabet: int) -> torch.Tensor:
        """Network input: ``(s + 1) / K`` where sent, 0 where masked."""
        return torch.where(mask, (symbols + 1).float() / alphabet, torch.zeros((), dtype=torch.float32))

    def _condition(self, name: str, mask: torch.Tensor, context: Context | None) -> torch.Tensor | None:
        """(B, Ccond, H, W): the stream's mask, then each earlier stream's values."""
        if not self.condition:
            return None
        parts = [mask.float()]
        size = mask.shape[-2:]
        for spec in self.context_of[name]:
            if context is None or spec.name not in context:
                raise ConfigError(f"{self.name}: stream {name!r} is conditioned on stream {spec.name!r}, "
                                  "which was not given as context")  # fmt: skip
            s = context[spec.name]
            sym = s.symbols if s.symbols.dim() == 4 else s.symbols[None]
            m = s.full_mask() if s.symbols.dim() == 4 else s.full_mask()[None]
            v = self._values(sym.clamp(0, spec.alphabet - 1), m, spec.alphabet)  # type: ignore[arg-type]
            if v.shape[-2:] != size:  # a side stream at another resolution: nearest neighbour
                v = F.interpolate(v, size=tuple(size), mode="nearest")
            parts.append(v.to(mask.device))
        return torch.cat(parts, dim=1)

    def _batch(
        self, stream: Stream, context: Context | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Symbols, mask (B, C, H, W) and the conditioning input of a batched or single stream."""
        single = stream.symbols.dim() == 3
        sym = stream.symbols[None] if single else stream.symbols
        mask = stream.full_mask()[None] if single else stream.full_mask()
        ctx = context
        if single and context:
            ctx = {k: Stream(v.spec, v.symbols[None], None if v.mask is None else v.full_mask()[None])
                   for k, v in context.items()}  # fmt: skip
        return sym, mask, self._condition(stream.spec.name, mask, ctx)

    def _logits(
        self, stream: Stream, context: Context | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Full-tensor pass: logits (B, C, K, H, W), symbols and mask (B, C, H, W)."""
        spec = stream.spec
        sym, mask, cond = self._batch(stream, context)
        sym = sym.clamp(0, spec.alphabet - 1)  # type: ignore[operator]
        x = self._values(sym, mask, spec.alphabet)  # type: ignore[arg-type]
        return self.nets[spec.name](x, cond), sym, mask

    # ------------------------------------------------------------------ training
    def likelihoods(self, stream: Stream, context: Context | None = None) -> torch.Tensor:
        spec = stream.spec
        if not self.fitted:  # the untrained network predicts uniform exactly: skip the pass
            k = spec.alphabet
            freq = frequencies(torch.zeros(k))
            p = freq.double() / float(1 << PRECISION)
            lk = p[stream.symbols.clamp(0, k - 1).cpu()].float().to(stream.symbols.device)  # type: ignore[operator]
            return torch.where(stream.full_mask(), lk, torch.ones_like(lk))
        with torch.no_grad():
            logits, sym, mask = self._logits(stream, context)
            freq = frequencies(logits.movedim(2, -1))  # (B, C, H, W, K)
            p = freq.gather(-1, sym.unsqueeze(-1)).squeeze(-1).double() / float(1 << PRECISION)
        lk = torch.where(mask, p.float(), torch.ones_like(p, dtype=torch.float32))
        return lk.view_as(stream.symbols)

    def fit_loss(self, streams: Sequence[Stream]) -> torch.Tensor:
        """Cross-entropy in bits per transmitted symbol, over every stream of the batch."""
        total: torch.Tensor | float = 0.0
        count = 0
        for i, s in enumerate(streams):
            logits, sym, mask = self._logits(s, {p.spec.name: p for p in streams[:i]})
            logp = torch.log_softmax(logits, dim=2).gather(2, sym.unsqueeze(2)).squeeze(2)
            total = total - logp[mask].sum() / math.log(2)
            count += int(mask.sum())
        return total / max(count, 1)  # type: ignore[return-value]

    def fit_begin(self) -> None:
        self.is_fitted.fill_(False)

    def fit_end(self) -> None:
        self.is_fitted.fill_(True)

    @property
    def fitted(self) -> bool:
        return bool(self.is_fitted)

    # ------------------------------------------------------------------ coding
    def _run(
        self,
        spec: StreamSpec,
        mask: torch.Tensor,
        context: Context | None,
        symbols: torch.Tensor | None,
        reader: AnsReader | None,
        threads: int = 1,
    ) -> tuple[torch.Tensor, list[np.ndarray], list[np.ndarray]]:
        """The shared step-by-step path. Encoding (``symbols`` given) collects each step's
        sent symbols and probabilities; decoding (``reader`` given) reads them. ``threads``:
        how many threads the network's steps may use (the results do not depend on it)."""
        c, h, w = mask.shape
        k = spec.alphabet
        assert k is not None
        out = torch.zeros((c, h, w), dtype=torch.int64)
        sent_syms: list[np.ndarray] = []
        sent_probs: list[np.ndarray] = []
        if not bool(mask.any()):
            return out, sent_syms, sent_probs
        if not self.fitted:  # uniform model (what the zero-initialized network predicts)
            n = int(mask.sum())
            probs = np.broadcast_to(probabilities(frequencies(torch.zeros(1, k))), (n, k))
            if symbols is not None:
                sent_syms.append(symbols[mask].numpy())
                sent_probs.append(np.ascontiguousarray(probs))
            else:
                assert reader is not None
                out[mask] = torch.from_numpy(reader.read(np.ascontiguousarray(probs)))
            return out, sent_syms, sent_probs
        from codec_lab.plugins.coders.common.wavefront import Wavefront, schedule  # numba: imported when used

        cond = self._condition(spec.name, mask[None], context)
        wave = Wavefront(self.nets[spec.name], h, w, cond, threads)
        # The per-step bookkeeping in numpy: a step is a few hundred cells, where torch's
        # per-call overhead cost more than the arithmetic (the values are the same).
        mask_np, out_np = np.ascontiguousarray(mask.numpy()), out.numpy()
        sym_np = None if symbols is None else symbols.numpy()
        kf = np.float32(k)
        for step in schedule(self.order, c, h, w):
            logits = wave.step_logits(step)
            valid, t, hh, ww = wave.cells(step)
            sent = mask_np[t, hh, ww]
            values = np.zeros(valid.shape, np.float32)
            if sent.any():
                probs = probabilities(frequencies(torch.from_numpy(logits[valid][sent])))
                if sym_np is not None:
                    s = sym_np[t, hh, ww][sent]
                    sent_syms.append(s)
                    sent_probs.append(probs)
                else:
                    assert reader is not None
                    s = reader.read(probs)
                    if int(s.min()) < 0 or int(s.max()) >= k:
                        raise BitstreamError(f"decoded symbol outside the alphabet of stream {spec.name!r}",
                                                 "the file is damaged")
                    out_np[t[sent], hh[sent], ww[sent]] = s
                vals = np.zeros(t.shape, np.float32)
                vals[sent] = (s + 1).astype(np.float32) / kf  # float32 division, as the network's inputs
                values[valid] = vals
            wave.write_values(step, values)
        return out, sent_syms, sent_probs

    def encode(self, stream: Stream, context: Context | None = None) -> bytes:
        spec = stream.spec
        sym, mask = stream.symbols.cpu(), stream.full_mask().cpu()
        if sym.numel() and bool(mask.any()):
            sent = sym[mask]
            if int(sent.min()) < 0 or int(sent.max()) >= spec.alphabet:  # type: ignore[operator]
                raise ValueError(f"symbols of stream {spec.name!r} outside its alphabet")
        sym = torch.where(mask, sym, 0)  # masked symbols are never read
        with _one_thread() as threads:
            _, syms, probs = self._run(spec, mask, _cpu(context), sym, None, threads)
        if not syms:
            return encode_symbols(np.zeros(0, dtype=np.int32), np.zeros((0, spec.alphabet or 1)))
        return encode_symbols(np.concatenate(syms), np.concatenate(probs))

    def decode(
        self,
        data: bytes,
        spec: StreamSpec,
        shape: tuple[int, int, int],
        mask: torch.Tensor | None,
        context: Context | None = None,
    ) -> torch.Tensor:
        full = torch.ones(shape, dtype=torch.bool) if mask is None else mask.expand(shape).cpu().bool()
        if not bool(full.any()):
            return torch.zeros(shape, dtype=torch.int64)
        reader = AnsReader(data, spec.name)
        with _one_thread() as threads:
            out, _, _ = self._run(spec, full, _cpu(context), None, reader, threads)
        return out


def _cpu(context: Context | None) -> dict[str, Stream] | None:
    """The context on the CPU, where coding runs."""
    if context is None:
        return None
    return {k: Stream(v.spec, v.symbols.cpu(), None if v.mask is None else v.mask.cpu())
            for k, v in context.items()}  # fmt: skip


class InclinedTcaeCoder(TcaeCoder):
    """Trimmed-convolution context coder, inclined planes ``c + h + w``, wavefront decoding."""

    name = "inclined-tcae"
    summary = "TCAE context model on inclined planes c+h+w: wavefront decoding in C+H+W-2 steps"
    version = "0.2"  # as tcae's
    order: ClassVar[Order] = "inclined"
    max_stream_symbols: ClassVar[int | None] = None  # C + H + W − 2 steps: no per-symbol cost


@hookimpl
def codec_register_coders() -> list[type[EntropyCoder]]:
    return [TcaeCoder, InclinedTcaeCoder]
