"""Contract rules of entropy coders: bit-exact coding, masks, honest likelihoods, causality, bounds.

Part of the contract checks of :mod:`codec_lab.corelib.testing`, which re-exports them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from codec_lab.corelib.contract_rules import (
    ContractViolation,
    Rule,
    RuleSkipped,
    _is_tensor,
    _shape,
    _Shared,
    require,
    run_rules,
)
from codec_lab.corelib.contracts import (
    Component,
    EntropyCoder,
    Rate,
    SetupContext,
)
from codec_lab.corelib.streams import Stream, StreamSpec

CODER_SPECS = [StreamSpec("side", 2, 3, side=True), StreamSpec("y", 4, 15)]


def setup_coder(coder: EntropyCoder, specs: Sequence[StreamSpec], rate: Rate | None = None) -> None:
    """Set ``coder`` up for ``specs`` as a ``Codec`` would (``rate``: for coders that code
    with a rate's density models)."""
    channels = max((s.channels for s in specs), default=1)
    alphabet = next((s.alphabet for s in specs if not s.side), None)
    parts: dict[str, Component] = {"coder": coder}
    if rate is not None:
        parts["rate"] = rate
    coder.setup(SetupContext(latent_channels=channels, alphabet=alphabet, downsampling_factor=8,
                             parts=parts, specs=tuple(specs)))  # fmt: skip



def _skewed(spec: StreamSpec, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Symbols concentrated near the middle of the alphabet, like a real latent (signed,
    around 0, with a few large outliers, when the alphabet is unbounded)."""
    if spec.alphabet is None:
        s = torch.round(torch.randn(shape, generator=gen) * 2)
        outliers = torch.rand(shape, generator=gen) < 0.02
        s = torch.where(outliers, s * 40, s)
        return s.to(torch.int64)
    mid = spec.alphabet // 2
    s = torch.round(torch.randn(shape, generator=gen) * max(1.0, spec.alphabet / 8)) + mid
    return s.clamp(0, spec.alphabet - 1).to(torch.int64)


def _other_symbols(spec: StreamSpec, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, spec.alphabet or 9, shape, generator=gen) - (0 if spec.alphabet else 4)


def _fit(coder: EntropyCoder, specs: Sequence[StreamSpec], gen: torch.Generator) -> None:
    """Fit the coder the way its ``fitting`` declaration says the engine will."""
    rule = "sets up and fits as declared"
    batches = [[Stream(s, _skewed(s, (2, s.channels, 6, 7), gen)) for s in specs] for _ in range(3)]
    if coder.fitting == "counted":
        coder.fit_begin()
        for streams in batches:
            coder.fit_observe(streams)
        coder.fit_end()
    elif coder.fitting == "trained":
        params = [p for p in coder.parameters() if p.requires_grad]
        require(params, rule, "a 'trained' coder must have parameters to train")
        opt = torch.optim.Adam(params, lr=1e-2)
        coder.fit_begin()
        coder.train()
        for streams in batches * 3:
            loss = coder.fit_loss(streams)
            require(_is_tensor(loss) and loss.dim() == 0 and bool(torch.isfinite(loss)), rule,
                    f"fit_loss returned {_shape(loss)}: fit_loss must be a finite scalar")
            opt.zero_grad()
            loss.backward()
            opt.step()
        coder.fit_end()
    else:
        require(coder.fitting == "none", rule,
                f"fitting must be counted, trained or none, not {coder.fitting!r}")


@dataclass
class _Case:
    """One stream of one image as the checks code it: symbols, a mask, and the streams before it."""

    spec: StreamSpec
    shape: tuple[int, int, int]
    sym: torch.Tensor
    mask: torch.Tensor
    ctx: dict[str, Stream]
    changed: torch.Tensor  # the symbols, with other values at the masked positions


def _cases(specs: Sequence[StreamSpec], seed: int = 1, hw: tuple[int, int] = (9, 11)) -> list[_Case]:
    gen = torch.Generator().manual_seed(seed)
    context: dict[str, Stream] = {}
    cases = []
    for spec in specs:
        shape = (spec.channels, *hw)
        sym = _skewed(spec, shape, gen)
        mask = torch.rand(shape, generator=gen) < 0.4
        changed = torch.where(mask, sym, _other_symbols(spec, shape, gen))
        cases.append(_Case(spec, shape, sym, mask, dict(context), changed))
        context[spec.name] = Stream(spec, torch.where(mask, sym, 0), mask)
    return cases


def _batched(ctx: dict[str, Stream], n: int) -> dict[str, Stream]:
    """The context of one image repeated ``n`` times along a batch axis."""
    return {k: Stream(v.spec, v.symbols[None].expand(n, *v.symbols.shape).clone(),
                      None if v.mask is None else v.full_mask()[None].expand(n, *v.symbols.shape).clone())
            for k, v in ctx.items()}  # fmt: skip


def _where(i: int, shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(v)) for v in np.unravel_index(i, tuple(shape))) + ")"


def coder_rules(
    make: Callable[[], EntropyCoder],
    specs: Sequence[StreamSpec] = CODER_SPECS,
    rate: Rate | None = None,
) -> list[Rule]:
    """The entropy-coder contract, rule by rule (see :func:`check_coder`)."""
    specs = list(specs)

    def prepare() -> EntropyCoder:
        coder = make()
        setup_coder(coder, specs, rate)
        _fit(coder, specs, torch.Generator().manual_seed(0))
        require(coder.fitting == "none" or coder.fitted, "sets up and fits as declared",
                "the coder says it is not fitted after fitting", "`fitted` must be True after fit_end()")
        coder.eval()
        return coder

    ready = _Shared(prepare, "sets up and fits as declared")
    cases = _cases(specs)

    def fits() -> None:
        ready()

    def returns_bytes() -> None:
        coder = ready()
        for c in cases:
            for mask in (None, c.mask):
                data = coder.encode(Stream(c.spec, c.sym, mask), c.ctx)
                require(isinstance(data, bytes), "encode returns bytes",
                        f"encode returned {type(data).__name__}", "return bytes (e.g. array.tobytes())")

    def decode_of(coder: EntropyCoder, c: _Case, mask: torch.Tensor | None) -> torch.Tensor:
        data = coder.encode(Stream(c.spec, c.sym, mask), c.ctx)
        require(isinstance(data, bytes), "encode returns bytes", f"encode returned {type(data).__name__}")
        return coder.decode(data, c.spec, c.shape, mask, c.ctx)

    def int64() -> None:
        rule = "decode returns int64 symbols of the stream's shape"
        coder = ready()
        for c in cases:
            for mask in (None, c.mask):
                dec = decode_of(coder, c, mask)
                require(_is_tensor(dec), rule, f"decode returned {type(dec).__name__}",
                        "return a torch tensor")
                require(dec.dtype == torch.int64, rule,
                        f"decode returned {dec.dtype}; decode must return int64 symbols",
                        "convert with .to(torch.int64)")
                require(tuple(dec.shape) == c.shape, rule,
                        f"decode must return shape {c.shape}, got {tuple(dec.shape)}",
                        "return the (C, h, w) grid, 0 at masked positions")

    def bit_exact() -> None:
        rule = "bit-exact round trip"
        coder = ready()
        for c in cases:
            data = coder.encode(Stream(c.spec, c.sym), c.ctx)
            dec = coder.decode(data, c.spec, c.shape, None, c.ctx)
            require(torch.equal(dec, c.sym), rule, f"stream {c.spec.name!r}: not bit-exact without a mask",
                    "the decoder must compute every probability exactly as the encoder did")
            require(torch.equal(coder.decode(data, c.spec, c.shape, None, c.ctx), c.sym), rule,
                    "decoding is not repeatable")
            data = coder.encode(Stream(c.spec, c.sym, c.mask), c.ctx)
            dec = coder.decode(data, c.spec, c.shape, c.mask, c.ctx)
            require(torch.equal(dec[c.mask], c.sym[c.mask]), rule,
                    f"stream {c.spec.name!r}: not bit-exact with a mask")
            require(not dec[~c.mask].any(), rule, "masked positions must decode to 0")
            cmask = torch.zeros(c.spec.channels, 1, 1, dtype=torch.bool)
            cmask[0] = True
            data_c = coder.encode(Stream(c.spec, c.sym, cmask), c.ctx)
            dec_c = coder.decode(data_c, c.spec, c.shape, cmask, c.ctx)
            require(torch.equal(dec_c[0], c.sym[0]) and not dec_c[1:].any(), rule,
                    "a (C, 1, 1) mask is not honoured", "masks broadcast to the symbols' shape")
            none = torch.zeros(c.shape, dtype=torch.bool)
            data_n = coder.encode(Stream(c.spec, c.sym, none), c.ctx)
            dec_n = coder.decode(data_n, c.spec, c.shape, none, c.ctx)
            require(not dec_n.any(), rule, "with nothing sent, decode must return zeros")

    def perturbed() -> None:
        rule = "bit-exact under perturbations"
        coder = ready()
        gen = torch.Generator().manual_seed(7)
        for c in cases:
            n = c.sym.numel()
            for trial in range(4):
                sym = c.sym.clone().flatten()
                j = int(torch.randint(0, n, (1,), generator=gen))
                sym[j] = _other_symbols(c.spec, (1,), gen)[0] if trial % 2 else (
                    (c.spec.alphabet - 1 - sym[j]) if c.spec.alphabet else -sym[j] * 7 + 3)
                sym = sym.view(c.shape)
                mask = None if trial < 2 else c.mask
                data = coder.encode(Stream(c.spec, sym, mask), c.ctx)
                dec = coder.decode(data, c.spec, c.shape, mask, c.ctx)
                want = sym if mask is None else torch.where(mask, sym, 0)
                require(torch.equal(dec, want), rule,
                        f"stream {c.spec.name!r}: after changing the symbol at {_where(j, c.shape)} "
                        "the round trip is no longer bit-exact",
                        "the decoder may only use symbols it has already decoded: condition each probability "
                        "on earlier symbols only, in the order the decoder visits them")
            if c.spec.alphabet:  # extremes: a grid of the smallest and largest symbols
                ends = torch.where(torch.rand(c.shape, generator=gen) < 0.5, 0, c.spec.alphabet - 1)
                data = coder.encode(Stream(c.spec, ends), c.ctx)
                require(torch.equal(coder.decode(data, c.spec, c.shape, None, c.ctx), ends), rule,
                        f"stream {c.spec.name!r}: not bit-exact on the alphabet's extreme symbols")

    def free_masked() -> None:
        coder = ready()
        for c in cases:
            data = coder.encode(Stream(c.spec, c.sym, c.mask), c.ctx)
            again = coder.encode(Stream(c.spec, c.changed, c.mask), c.ctx)
            require(again == data, "masked positions cost nothing", "masked symbols changed the bytes",
                    "skip masked positions: never code nor read them")

    def bound() -> None:
        rule = "max_symbols admits what encode wrote"
        coder = ready()
        bounded = False
        for c in cases:
            # the skewed symbols, and a grid of their mode: the most symbols per byte a fitted model allows
            mode = c.spec.alphabet // 2 if c.spec.alphabet else 0
            grids = [c.sym, torch.full(c.shape, mode, dtype=torch.int64)]
            if c.spec.alphabet:
                # a run of the lowest symbol: an ANS coder starting from an empty state may code it
                # for free, so a bound from the cost of the likeliest symbol would be wrong
                tail = torch.zeros(c.shape, dtype=torch.int64)
                tail.view(-1)[0] = c.spec.alphabet - 1
                grids += [torch.zeros(c.shape, dtype=torch.int64), tail]
            for g in grids:
                data = coder.encode(Stream(c.spec, g), c.ctx)
                most = coder.max_symbols(len(data), c.spec)
                if most is None:
                    continue
                bounded = True
                require(most >= g.numel(), rule, f"stream {c.spec.name!r}: {len(data)} bytes carry "
                        f"{g.numel()} symbols but max_symbols says at most {most}: such files would be "
                        "refused",
                        "bound by the cost of the most probable symbol, plus the termination words")
        if not bounded:
            raise RuleSkipped("max_symbols gives no bound")

    def probabilities() -> None:
        rule = "likelihoods are probabilities"
        coder = ready()
        for c in cases:
            batch = torch.stack([c.sym, c.changed])
            bmask = torch.stack([c.mask, c.mask])
            lk = coder.likelihoods(Stream(c.spec, batch, bmask), _batched(c.ctx, 2))
            require(_is_tensor(lk) and lk.shape == batch.shape, rule, f"likelihoods are {_shape(lk)}; "
                    f"likelihoods must have the symbols' shape {tuple(batch.shape)}")
            require(torch.all(lk[~bmask] == 1), rule, "likelihood must be 1 at masked positions")
            require(torch.all(lk[bmask] > 0) and torch.all(lk[bmask] <= 1), rule,
                    "likelihoods outside (0, 1]")
            full = coder.likelihoods(Stream(c.spec, c.sym[None]), _batched(c.ctx, 1))
            require(torch.all(full > 0) and torch.all(full <= 1), rule, "likelihoods outside (0, 1]")

    def honest() -> None:
        rule = "likelihoods match the coded bits"
        coder = ready()
        for c in cases:
            data = coder.encode(Stream(c.spec, c.sym, c.mask), c.ctx)
            lk = coder.likelihoods(Stream(c.spec, c.sym[None], c.mask[None]), _batched(c.ctx, 1))[0]
            bits = float(-torch.log2(lk[c.mask].double()).sum())
            actual = 8 * len(data)
            require(math.isfinite(bits), rule, "likelihoods give infinite bits")
            slack = 64 + 0.02 * bits
            if not coder.likelihoods_exact:
                slack = max(slack, coder.likelihood_tolerance * bits + 64)
            claim = "exact" if coder.likelihoods_exact else "estimate"
            require(abs(actual - bits) <= slack, rule,
                    f"stream {c.spec.name!r}: likelihoods say {bits:.0f} bits, the file has {actual} "
                    f"({claim} claimed)",
                    "likelihoods must be the probabilities the coder codes with (likelihoods_exact = "
                    "True), or an estimate within likelihood_tolerance")

    def exact_only() -> EntropyCoder:
        coder = ready()
        if not coder.likelihoods_exact:
            raise RuleSkipped("likelihoods are declared an estimate (an adaptive coder)")
        return coder

    def normalized() -> None:
        rule = "likelihoods sum to at most 1 over the alphabet"
        coder = exact_only()
        gen = torch.Generator().manual_seed(3)
        finite = [c for c in cases if c.spec.alphabet]
        if not finite:
            raise RuleSkipped("no stream has a finite alphabet")
        for c in finite:
            k = c.spec.alphabet
            n = c.sym.numel()
            for j in torch.randperm(n, generator=gen)[:6].tolist():
                batch = c.sym.flatten().repeat(k, 1)
                batch[:, j] = torch.arange(k)
                lk = coder.likelihoods(Stream(c.spec, batch.view(k, *c.shape)), _batched(c.ctx, k))
                total = float(lk.reshape(k, -1)[:, j].double().sum())
                require(total <= 1 + 1e-3, rule,
                        f"stream {c.spec.name!r}: at {_where(j, c.shape)} the likelihoods of the {k} "
                        f"symbols sum to {total:.3f}",
                        "a symbol's probability may not depend on the symbol itself: likelihoods must be "
                        "the coding distribution evaluated at the symbol")

    def causal() -> None:
        rule = "causal: no symbol's probability depends on itself or on later ones"
        coder = exact_only()
        gen = torch.Generator().manual_seed(5)
        for c in _cases(specs, seed=2, hw=(4, 5)):
            n = c.sym.numel()
            flat = c.sym.flatten()
            probe = torch.randperm(n, generator=gen)[:256]
            batch = flat.repeat(len(probe) + 1, 1)
            rows = torch.arange(1, len(probe) + 1)
            new = _other_symbols(c.spec, (len(probe),), gen)
            bumped = (new + 1) % c.spec.alphabet if c.spec.alphabet else new + 1
            new = torch.where(new == flat[probe], bumped, new)
            batch[rows, probe] = new
            lk = coder.likelihoods(Stream(c.spec, batch.view(-1, *c.shape)), _batched(c.ctx, len(batch)))
            lk = lk.reshape(len(batch), n).double()
            moved = (lk[1:] - lk[:1]).abs() > 1e-6  # (probe j, position i): s_j moves p_i
            moved[torch.arange(len(probe)), probe] = False
            edges: dict[int, set[int]] = {}  # i -> the j that p_i depends on
            for r, i in torch.nonzero(moved).tolist():
                edges.setdefault(i, set()).add(int(probe[r]))
            cycle = _find_cycle(edges)
            if cycle:
                where = " → ".join(_where(i, c.shape) for i in cycle)
                raise ContractViolation(
                    rule, f"stream {c.spec.name!r}: the probabilities of the symbols at (c, h, w) {where} "
                    "depend on each other in a cycle, so no decoding order can compute them",
                    "condition each probability only on symbols coded before it (a causal, masked context) "
                    "and on earlier streams in `context`")

    return [Rule("sets up and fits as declared", fits),
            Rule("encode returns bytes", returns_bytes),
            Rule("decode returns int64 symbols of the stream's shape", int64),
            Rule("bit-exact round trip", bit_exact),
            Rule("bit-exact under perturbations", perturbed),
            Rule("masked positions cost nothing", free_masked),
            Rule("max_symbols admits what encode wrote", bound),
            Rule("likelihoods are probabilities", probabilities),
            Rule("likelihoods match the coded bits", honest),
            Rule("likelihoods sum to at most 1 over the alphabet", normalized),
            Rule("causal: no symbol's probability depends on itself or on later ones", causal)]  # fmt: skip


def _find_cycle(edges: dict[int, set[int]]) -> list[int]:
    """A cycle of the dependency graph (``i`` depends on every ``j`` in ``edges[i]``), or []."""
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    for start in edges:
        if state.get(start):
            continue
        path = [start]
        stack: list[Iterator[int]] = [iter(edges.get(start, ()))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(edges.get(nxt, ())))
    return []


def check_coder(
    make: Callable[[], EntropyCoder],
    specs: Sequence[StreamSpec] = CODER_SPECS,
    rate: Rate | None = None,
) -> None:
    """Bit-exact coding with and without masks; honest likelihoods; masked positions are free.

    Every stream is coded with the streams before it as its ``context`` (as the ``Codec``
    does), and the likelihoods are held to the coder's claim: ``likelihoods_exact`` coders
    cost what their likelihoods say, up to termination words, form a distribution at every
    position and are causal (no cycle of dependencies between positions); estimating coders
    are held within their ``likelihood_tolerance``. A coder that codes with a rate plugin's
    density models (``requires`` a rate) is given that ``rate``, with ``specs`` from its set-up.
    """
    run_rules(coder_rules(make, specs, rate))
