"""``cabac``: a context-adaptive binary arithmetic coder, the CABAC-like baseline.

The adaptive coder of methods-spec §2.7 / A20: every symbol is binarized (truncated unary
for tiny alphabets, a truncated fixed-length binary tree above) and each bin is coded with
the adaptive probability of its context — the bin's node together with the (bucketed) values
of the left and the upper neighbour in the same channel, optionally also the co-located
symbol of the previous channel. Neighbours that are outside the grid or masked count as
"absent". Symbols go channel by channel in raster order; masked positions are never coded.
See :mod:`…common.binarization` for the layout and :mod:`…common.binary_coder` for the
engine (an LZMA-style range coder, integer only, compiled with numba).

The context states adapt while coding, so the model follows each image. They start either
*cold* (every probability ½) or *fitted*: after training the engine counts every context's
bins on the training codes (``fit_observe``) and the coder starts each context from those
counts (``init="fitted"``, the default; a context the training codes never reached starts
cold). The counts are the stored model; the initial states are derived from them with
integer arithmetic at coding time, so the same fit serves either state model.

Defaults, measured by ``python -m bench.cabac`` on latent-like and smooth codes (K = 8, 31):
the ``shift`` counter with warm-up and shift 6 codes 1.5–3.5 % smaller than the 64-state
machine and 0.5–1.5 % smaller than LZMA's plain shift-5 counter, and stays within 0.6 % of
the static two-pass code length of its own contexts (the FSM: up to 3.3 %); fitted initial
states save up to 1 % on a Kodak-sized latent (more on smaller ones); neighbours in 5 buckets
2 values wide around the middle symbol suit latent codes (uniform buckets suit smooth fields).

``likelihoods`` estimate what the adaptive coder spends, vectorized in torch: for each image
the bins of every context are counted, and the context costs what a sequential
(Krichevsky–Trofimov / Dirichlet) estimator starting from the coder's initial state would
spend on those counts — an order-free stand-in for the adaptation — shared among the bins in
proportion to their surprisal. The estimate is within ``likelihood_tolerance`` of the real
bytes (``bench/cabac.py`` measures the gap).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from codec_lab import hookimpl
from codec_lab.contracts import Component, Context, EntropyCoder, SetupContext, Stream, StreamSpec
from codec_lab.errors import BitstreamError, ConfigError
from codec_lab.plugins.coders.common.binarization import MAX_ALPHABET, Binarization, ContextLayout

if TYPE_CHECKING:
    from codec_lab.plugins.coders.common.binary_coder import Adaptation

__all__ = ["CabacCoder"]

MAX_CONTEXTS = 1 << 22
"""Most contexts of one stream (their counts are stored with the model)."""


def _engine():  # type: ignore[no-untyped-def]
    """The numba engine, imported on first use: importing numba costs ~0.3 s, which a
    command that never codes with this coder should not pay."""
    from codec_lab.plugins.coders.common import binary_coder

    return binary_coder


class CabacCoder(EntropyCoder):
    """Context-adaptive binary arithmetic coder with (left, up) neighbour contexts.

    Args:
        states: ``"shift"`` — a 15-bit probability counter with shift update (LZMA);
            ``"fsm"`` — CABAC's 64-state machine.
        shift: the counter's update shift (``shift`` states): larger adapts slower but
            more precisely.
        warmup: fresh contexts take fast first steps (≈ 1 / (n + 2)) before settling to
            ``shift`` (``shift`` states).
        init: ``"fitted"`` — contexts start from bin counts fitted on the training codes;
            ``"cold"`` — every context starts at probability ½ and fitting changes nothing.
        buckets: value classes of a neighbour (plus "absent"); an alphabet of at most this
            many symbols uses one class per value.
        bucket_width: 0 — uniform buckets over the alphabet; w ≥ 1 — buckets w values wide
            centred on the middle of the alphabet (the code's zero), tails clamped.
        previous_channel: also condition on the co-located symbol of the previous channel.
        per_channel: give every channel its own contexts (else channels share them).
        unary_max: alphabets up to this size are binarized truncated-unary, larger ones as a
            truncated binary tree.
    """

    name = "cabac"
    summary = "context-adaptive binary arithmetic coder, (left, up) neighbour contexts (numba)"
    version = "0.1"
    fitting = "counted"
    likelihoods_exact = False
    likelihood_tolerance = 0.1  # measured: within ±3.1 % on 98k- and 1M-symbol codes

    def __init__(
        self,
        states: Literal["shift", "fsm"] = "shift",
        shift: int = 6,
        warmup: bool = True,
        init: Literal["cold", "fitted"] = "fitted",
        buckets: int = 5,
        bucket_width: int = 2,
        previous_channel: bool = False,
        per_channel: bool = False,
        unary_max: int = 4,
    ) -> None:
        super().__init__()
        checks = (("shift", shift, 1, 10), ("buckets", buckets, 1, 16),
                  ("bucket_width", bucket_width, 0, 128), ("unary_max", unary_max, 1, 16))  # fmt: skip
        for key, value, low, high in checks:
            if not low <= value <= high:
                raise ConfigError(f"cabac: {key} must be in [{low}, {high}], got {value}")
        self.states, self.shift, self.warmup, self.init = states, shift, warmup, init
        self.buckets, self.bucket_width = buckets, bucket_width
        self.previous_channel, self.per_channel, self.unary_max = previous_channel, per_channel, unary_max
        self.specs: dict[str, StreamSpec] = {}
        self.layouts: dict[str, ContextLayout] = {}
        self._fit: dict[str, np.ndarray] = {}

    def check_composition(self, parts: Mapping[str, Component]) -> str | None:
        quantizer = parts["quantizer"]
        if quantizer.alphabet_size is None:
            named = getattr(type(quantizer), "name", type(quantizer).__name__)
            return (f"cabac binarizes symbols of a finite alphabet, and quantizer {named!r} has "
                    "none: build the run with --quantizer stochastic or multilevel")  # fmt: skip
        return None

    def setup(self, ctx: SetupContext) -> None:
        for spec in ctx.specs:
            if spec.alphabet is None or not 1 <= spec.alphabet <= MAX_ALPHABET:
                raise ConfigError(
                    f"cabac: stream {spec.name!r} has alphabet {spec.alphabet}; the coder needs a "
                    f"finite one of 1..{MAX_ALPHABET} symbols",
                    "use a quantizer with a finite alphabet (stochastic, multilevel)",
                )
            layout = ContextLayout(Binarization.choose(spec.alphabet, self.unary_max), self.buckets,
                                   self.bucket_width, self.previous_channel, self.per_channel,
                                   spec.channels)  # fmt: skip
            if layout.contexts > MAX_CONTEXTS:
                raise ConfigError(f"cabac: stream {spec.name!r} would have {layout.contexts:,} contexts",
                                  "use fewer buckets, or per_channel=false")  # fmt: skip
            self.specs[spec.name] = spec
            self.layouts[spec.name] = layout
            self.register_buffer(f"counts_{spec.name}", torch.zeros((layout.contexts, 2), dtype=torch.int64))
        self.register_buffer("is_fitted", torch.zeros((), dtype=torch.bool))

    def extra_state_info(self) -> dict[str, Any]:
        return {
            "states": self.states,
            "init": self.init,
            "fitted": bool(self.is_fitted) if hasattr(self, "is_fitted") else False,
            "streams": {name: layout.describe() for name, layout in self.layouts.items()},
        }

    # ------------------------------------------------------------------ model
    def _adaptation(self) -> Adaptation:
        return _engine().Adaptation(self.states, self.shift, self.warmup)

    def _counts(self, name: str) -> torch.Tensor:
        return getattr(self, f"counts_{name}")

    def _initial(self, name: str, adapt: Adaptation) -> tuple[np.ndarray, np.ndarray]:
        """Initial context states: derived from the fitted counts, or cold."""
        n = self.layouts[name].contexts
        if self.init == "fitted" and bool(self.is_fitted):
            return adapt.initial(self._counts(name).cpu().numpy(), n)
        return adapt.initial(None, n)

    @property
    def fitted(self) -> bool:
        return bool(self.is_fitted)

    def fit_begin(self) -> None:
        self._fit = {name: np.zeros((layout.contexts, 2), dtype=np.int64)
                     for name, layout in self.layouts.items()}  # fmt: skip

    def fit_observe(self, streams: Sequence[Stream]) -> None:
        engine = _engine()
        for s in streams:
            name = s.spec.name
            if name not in self.layouts:
                continue
            acc = self._fit.setdefault(name, np.zeros((self.layouts[name].contexts, 2), dtype=np.int64))
            sym, mask = self._batched(s)
            k = s.spec.alphabet
            sym = sym.clamp(0, k - 1).cpu().numpy()  # type: ignore[operator]
            mask = mask.cpu().numpy()
            for b in range(sym.shape[0]):
                engine.count_bins(sym[b], mask[b], self.layouts[name], acc)

    def fit_end(self) -> None:
        for name, acc in self._fit.items():
            self._counts(name).copy_(torch.from_numpy(acc))
        self._fit = {}
        self.is_fitted.fill_(True)

    # ------------------------------------------------------------------ estimate
    @staticmethod
    def _batched(stream: Stream) -> tuple[torch.Tensor, torch.Tensor]:
        if stream.symbols.dim() == 3:
            return stream.symbols[None], stream.full_mask()[None]
        return stream.symbols, stream.full_mask()

    def _prior(self, name: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per context, the Dirichlet pseudo-counts (a0, a1) the initial states stand for."""
        adapt = self._adaptation()
        a, b = self._initial(name, adapt)
        q0 = adapt.probability(a, b)
        m = adapt.memory(b)
        prior = torch.from_numpy(np.stack([q0 * m, (1.0 - q0) * m], axis=-1))
        return prior.to(device=device, dtype=torch.float64).unbind(-1)  # type: ignore[return-value]

    def likelihoods(self, stream: Stream, context: Context | None = None) -> torch.Tensor:
        name = stream.spec.name
        layout = self.layouts[name]
        with torch.no_grad():
            sym, mask = self._batched(stream)
            k = layout.binarization.alphabet
            sym = sym.clamp(0, k - 1)
            node_t, bit_t = (torch.from_numpy(t).to(sym.device) for t in layout.binarization.paths)
            nodes, bits = node_t[sym], bit_t[sym]  # (B, C, H, W, D)
            valid = (nodes >= 0) & mask[..., None]
            n_ctx = layout.contexts
            ctx = layout.combo_ids(sym, mask)[..., None] * layout.binarization.nodes + nodes.clamp(min=0)
            batch = torch.arange(sym.shape[0], device=sym.device).view(-1, 1, 1, 1, 1)
            key = (batch * n_ctx + ctx)[valid]
            bit = bits[valid]
            # The bins of each (image, context): dense when small, else only the ones present.
            if sym.shape[0] * n_ctx <= 4 * key.numel() + (1 << 16):
                slot, slot_ctx = key, torch.arange(sym.shape[0] * n_ctx, device=sym.device) % max(n_ctx, 1)
            else:
                uniq, slot = torch.unique(key, return_inverse=True)
                slot_ctx = uniq % n_ctx
            counts = torch.bincount(slot * 2 + bit, minlength=2 * slot_ctx.numel()).view(-1, 2).double()
            a0, a1 = self._prior(name, sym.device)
            a0, a1 = a0[slot_ctx], a1[slot_ctx]
            n0, n1 = counts[:, 0], counts[:, 1]
            lg = torch.lgamma
            # Sequential (Dirichlet) code length of each context's bins, in bits.
            nats = lg(a0) + lg(a1) - lg(a0 + a1) + lg(a0 + a1 + n0 + n1) - lg(a0 + n0) - lg(a1 + n1)
            length = nats / math.log(2)
            q0 = (n0 + a0) / (n0 + n1 + a0 + a1)
            s0, s1 = -torch.log2(q0), -torch.log2(1.0 - q0)
            spread = n0 * s0 + n1 * s1
            scale = torch.where(spread > 0, length / spread.clamp(min=1e-300), torch.zeros_like(spread))
            cost = torch.stack([s0 * scale, s1 * scale], dim=-1)  # (slots, 2) bits of a 0, a 1
            per_bin = torch.zeros(valid.shape, dtype=torch.float64, device=sym.device)
            per_bin[valid] = cost[slot, bit]
            bits_sym = per_bin.sum(-1).clamp(max=100.0)  # a likelihood stays a positive float32
            lk = torch.exp2(-bits_sym).float()
            lk = torch.where(mask, lk, torch.ones_like(lk))
        return lk.view_as(stream.symbols)

    # ------------------------------------------------------------------ coding
    def encode(self, stream: Stream, context: Context | None = None) -> bytes:
        name = stream.spec.name
        sym, mask = stream.symbols.cpu(), stream.full_mask().cpu()
        sent = sym[mask]
        if sent.numel() and (int(sent.min()) < 0 or int(sent.max()) >= stream.spec.alphabet):  # type: ignore[operator]
            raise ValueError(f"symbols of stream {name!r} outside its alphabet")
        # Masked positions are never read; zero them so no stray value reaches the kernel.
        sym = torch.where(mask, sym, torch.zeros((), dtype=sym.dtype))
        adapt = self._adaptation()
        init = self._initial(name, adapt)
        return _engine().encode(sym.numpy(), mask.numpy(), self.layouts[name], adapt, init)

    def decode(
        self,
        data: bytes,
        spec: StreamSpec,
        shape: tuple[int, int, int],
        mask: torch.Tensor | None,
        context: Context | None = None,
    ) -> torch.Tensor:
        layout = self.layouts[spec.name]
        if len(shape) != 3 or shape[0] != layout.channels or min(shape) < 0:
            raise BitstreamError(f"stream {spec.name!r}: cannot decode a grid of shape {tuple(shape)}",
                                 "the file is damaged or was coded by a different model")  # fmt: skip
        if mask is None:
            full = torch.ones(shape, dtype=torch.bool)
        else:
            full = mask.to(torch.bool).expand(shape).cpu()
        adapt = self._adaptation()
        out = _engine().decode(bytes(data), full.numpy(), layout, adapt, self._initial(spec.name, adapt))
        return torch.from_numpy(out)


@hookimpl
def codec_register_coders() -> list[type[EntropyCoder]]:
    return [CabacCoder]
