"""A tiny trained context coder for the tests: the ``trained`` fitting stage and ``context``.

Each channel of a stream has a learned categorical distribution; a stream coded after others
switches between two of them by the co-located symbol of the first earlier stream (zero or
not), so its decoder needs the context the encoder saw. Probabilities are quantized to
integer frequencies (2^16 in all, each at least 1) before coding, and ``likelihoods`` are
those frequencies, so the claim is ``exact``.
"""

from __future__ import annotations

from collections.abc import Sequence

import constriction
import numpy as np
import torch

from codec_lab import hookimpl
from codec_lab.contracts import Context, EntropyCoder, SetupContext, Stream, StreamSpec

PRECISION = 16


class TinyContextCoder(EntropyCoder):
    """Per-channel learned categoricals, two states chosen by the first earlier stream."""

    name = "tiny-context"
    summary = "test coder: learned per-channel categoricals conditioned on an earlier stream"
    version = "0.1"
    fitting = "trained"
    default_fit_steps = 20

    def setup(self, ctx: SetupContext) -> None:
        self.specs = {s.name: s for s in ctx.specs}
        self.logits = torch.nn.ParameterDict({
            s.name: torch.nn.Parameter(torch.zeros(2, s.channels, s.alphabet)) for s in ctx.specs
        })  # fmt: skip

    # ------------------------------------------------------------------ model
    @staticmethod
    def _state(symbols: torch.Tensor, context: Context | None) -> torch.Tensor:
        """0/1 per position from the first earlier stream's channel 0 (0 with no context)."""
        if not context:
            return torch.zeros(symbols.shape[:-3] + symbols.shape[-2:], dtype=torch.int64)
        first = next(iter(context.values())).symbols
        return (first[..., 0, :, :] != 0).to(torch.int64).cpu()

    def _freq(self, name: str) -> torch.Tensor:
        """(2, C, K) integer frequencies summing to 2^PRECISION, each >= 1."""
        p = torch.softmax(self.logits[name].detach().double(), -1)
        k = p.shape[-1]
        freq = 1 + torch.floor(p * ((1 << PRECISION) - k)).to(torch.int64)
        rest = (1 << PRECISION) - freq.sum(-1)
        return freq.scatter_add(-1, freq.argmax(-1, keepdim=True), rest.unsqueeze(-1))

    def likelihoods(self, stream: Stream, context: Context | None = None) -> torch.Tensor:
        freq = self._freq(stream.spec.name).float() / (1 << PRECISION)
        sym = stream.symbols.cpu()
        state = self._state(sym, context)
        c = sym.shape[-3]
        chan = torch.arange(c).view(c, 1, 1).expand(sym.shape[-3:]).expand_as(sym)
        st = state.unsqueeze(-3).expand_as(sym)
        p = freq[st, chan, sym]
        return torch.where(stream.full_mask().cpu(), p, torch.ones_like(p)).to(stream.symbols.device)

    def fit_loss(self, streams: Sequence[Stream]) -> torch.Tensor:
        total, count = 0.0, 0
        for i, s in enumerate(streams):
            logp = torch.log_softmax(self.logits[s.spec.name], -1)  # (2, C, K)
            ctx = {p.spec.name: p for p in streams[:i]}
            state = self._state(s.symbols, ctx)
            b, c = s.symbols.shape[:2]
            chan = torch.arange(c).view(1, c, 1, 1).expand_as(s.symbols)
            st = state.unsqueeze(1).expand_as(s.symbols)
            mask = s.full_mask()
            total = total - logp[st, chan, s.symbols][mask].sum() / np.log(2)
            count += int(mask.sum())
        return total / max(count, 1)

    # ------------------------------------------------------------------ coding
    def _groups(self, shape: tuple[int, int, int], state: torch.Tensor, mask: torch.Tensor):
        """(channel, state, positions) in the order both sides code them."""
        for c in range(shape[0]):
            for s in (0, 1):
                sel = mask[c] & (state == s)
                if bool(sel.any()):
                    yield c, s, sel

    def _model(self, freq: torch.Tensor, c: int, s: int):
        probs = freq[s, c].numpy() / float(1 << PRECISION)
        return constriction.stream.model.Categorical(probs, perfect=False)

    def encode(self, stream: Stream, context: Context | None = None) -> bytes:
        sym, mask = stream.symbols.cpu(), stream.full_mask().cpu()
        freq, state = self._freq(stream.spec.name), self._state(sym, context)
        coder = constriction.stream.stack.AnsCoder()
        for c, s, sel in reversed(list(self._groups(tuple(sym.shape), state, mask))):
            coder.encode_reverse(sym[c][sel].numpy().astype(np.int32), self._model(freq, c, s))
        return coder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, spec: StreamSpec, shape: tuple[int, int, int],
               mask: torch.Tensor | None, context: Context | None = None) -> torch.Tensor:  # fmt: skip
        full = torch.ones(shape, dtype=torch.bool) if mask is None else mask.expand(shape).cpu()
        out = torch.zeros(shape, dtype=torch.int64)
        freq, state = self._freq(spec.name), self._state(out, context)
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        for c, s, sel in self._groups(shape, state, full):
            values = coder.decode(self._model(freq, c, s), int(sel.sum()))
            out[c][sel] = torch.from_numpy(values.astype(np.int64))
        return out


@hookimpl
def codec_register_coders() -> list[type[EntropyCoder]]:
    return [TinyContextCoder]
