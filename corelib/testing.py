"""Reusable contract checks: one function per plugin kind.

A plugin author can run them in their own tests (the project's own contract tests, parametrized
over every registered component, call the same functions)::

    from codec_lab.corelib.testing import check_coder, check_quantizer
    check_quantizer(MyQuantizer())
    check_coder(MyCoder)

Each check raises AssertionError naming the broken rule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

from codec_lab.corelib.contracts import (
    KINDS,
    NAME_PATTERN,
    Component,
    ComponentInfo,
    Decoder,
    Encoder,
    EntropyCoder,
    Quantizer,
    Rate,
    RateOutput,
    SetupContext,
    TrainContext,
)
from codec_lab.corelib.params import validate_params
from codec_lab.corelib.streams import Stream, StreamSpec

__all__ = [
    "CODER_SPECS",
    "VERSION",
    "check_coder",
    "check_decoder",
    "check_encoder",
    "check_info",
    "check_quantizer",
    "check_rate",
    "check_state_dict_round_trip",
    "construct",
    "features_for",
    "setup_coder",
    "setup_rate",
]

VERSION = re.compile(r"^\d+(\.\d+)*$")


def construct(info: ComponentInfo, params: dict[str, Any] | None = None) -> Component:
    """Validate ``params`` against the component's signature and construct it."""
    full = validate_params(info.cls, params or {}, f"model.{info.kind}")
    return info.cls(**full)


# ---------------------------------------------------------------------------- every kind
def check_info(info: ComponentInfo) -> None:
    """Registry metadata: kebab-case name, one-line summary, dotted version, its contract."""
    assert NAME_PATTERN.fullmatch(info.name), f"name {info.name!r} is not lowercase kebab-case"
    assert info.cls.name == info.name, "registered name differs from the class attribute"
    assert info.summary.strip(), f"{info.kind} {info.name} has no summary"
    assert "\n" not in info.summary, "summary must be one line"
    assert VERSION.match(info.version), f"version {info.version!r} is not dotted numbers"
    assert info.source, "component has no source"
    assert issubclass(info.cls, KINDS[info.kind]), f"does not subclass {KINDS[info.kind].__name__}"
    assert info.cls.kind == info.kind
    for other, names in info.cls.requires.items():
        assert other in KINDS, f"requires names unknown kind {other!r}"
        assert names and all(isinstance(n, str) for n in names)


def _perturb(module: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point() and t.numel():
                t.add_(torch.rand(t.shape, generator=gen, dtype=t.dtype))


def check_state_dict_round_trip(make: Callable[[], torch.nn.Module]) -> None:
    """A fresh instance loads another instance's (changed) state dict and then equals it."""
    a, b = make(), make()
    _perturb(a)
    sa = a.state_dict()
    b.load_state_dict(sa)
    sb = b.state_dict()
    assert list(sa) == list(sb), "state dict keys differ after loading"
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), f"{key} differs after load_state_dict"


# ---------------------------------------------------------------------------- transforms
def check_encoder(enc: Encoder) -> dict[str, torch.Tensor]:
    """``forward`` maps (B, 3, H, W) to ``{"y": (B, C, H/f, W/f)}``, deterministically in eval."""
    f = enc.downsampling_factor
    assert isinstance(f, int) and f >= 1
    assert isinstance(enc.latent_channels, int) and enc.latent_channels >= 1
    h, w = 4 * max(f, 4), 3 * max(f, 8)
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    enc.eval()
    with torch.no_grad():
        feats = enc(x)
        again = enc(x)
    assert isinstance(feats, dict) and "y" in feats, "encoder must return a dict with 'y'"
    assert feats["y"].shape == (2, enc.latent_channels, h // f, w // f)
    assert feats["y"].is_floating_point()
    assert torch.equal(feats["y"], again["y"]), "eval-mode encoder is not deterministic"
    return feats


def check_decoder(dec: Decoder, latent_channels: int, factor: int | None) -> None:
    """``forward`` maps (B, C, h, w) to (B, 3, h·f, w·f)."""
    y = torch.randn(2, latent_channels, 3, 4, generator=torch.Generator().manual_seed(0))
    dec.eval()
    with torch.no_grad():
        x = dec(y)
    assert x.dim() == 4 and x.shape[:2] == (2, 3)
    if factor is not None:
        assert x.shape[-2:] == (3 * factor, 4 * factor)
    assert torch.isfinite(x).all()


# ---------------------------------------------------------------------------- quantizer
def check_quantizer(q: Quantizer) -> None:
    """Eval forward is ``from_symbols(to_symbols(.))``; symbols lie in [0, K); training has grads."""
    k = q.alphabet_size
    assert k is None or (isinstance(k, int) and k >= 2), f"alphabet_size {k!r}"
    gen = torch.Generator().manual_seed(0)
    spread = (k or 16) / 1.5
    y = torch.randn(2, 4, 5, 6, generator=gen) * spread
    q.eval()
    with torch.no_grad():
        hard = q(y)
    sym = q.to_symbols(hard)
    assert sym.dtype == torch.int64, "symbols must be int64"
    assert sym.shape == y.shape
    if k is not None:
        assert int(sym.min()) >= 0 and int(sym.max()) < k, "symbols outside [0, K)"
    assert torch.equal(hard, q.from_symbols(sym).to(hard.dtype)), (
        "eval forward differs from from_symbols(to_symbols(forward))"
    )
    assert torch.equal(q.quantize(y), sym), "quantize() differs from to_symbols(eval forward)"
    if k is not None:
        every = torch.arange(k)
        assert torch.equal(q.to_symbols(q.from_symbols(every)), every), "to/from_symbols not inverse"
    # quantize() leaves the training mode as it was
    q.train()
    q.quantize(y)
    assert q.training
    yg = y.clone().requires_grad_(True)
    out = q(yg)
    assert out.shape == y.shape
    out.sum().backward()
    assert yg.grad is not None and torch.isfinite(yg.grad).all(), "training forward has no gradient"
    q.eval()


# ---------------------------------------------------------------------------- rate
def features_for(y: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Encoder features for a latent ``y``: ``"y"`` and an ``"importance"`` map in (0, 1)
    covering every level (rates that need no map ignore it)."""
    gen = torch.Generator().manual_seed(seed)
    b, _, h, w = y.shape
    return {"y": y, "importance": torch.rand(b, 1, h, w, generator=gen).clamp(1e-3, 1 - 1e-3)}


def _check_rate_round(rate: Rate, q: Quantizer, specs: Sequence[StreamSpec], y: torch.Tensor) -> RateOutput:
    rate.eval()
    q.eval()
    with torch.no_grad():
        offset = rate.quantization_offset(q)
        y_tilde = q(y) if offset is None else q(y - offset) + offset
        out = rate(y_tilde, features_for(y), q)
    assert isinstance(out, RateOutput)
    assert out.y_hat.shape == y.shape
    assert out.rate_loss.dim() == 0, "rate_loss must be a scalar tensor"
    assert [s.spec.name for s in out.streams] == [s.name for s in specs], "streams out of spec order"
    hw = (y.shape[-2], y.shape[-1])
    decoded: dict[str, torch.Tensor] = {}
    for spec, stream in zip(specs, out.streams, strict=True):
        assert stream.symbols.dtype == torch.int64
        assert stream.symbols.shape[:2] == (y.shape[0], spec.channels)
        sent = stream.symbols[stream.full_mask()]
        if sent.numel() and spec.alphabet is not None:
            assert int(sent.min()) >= 0 and int(sent.max()) < spec.alphabet, "symbols outside alphabet"
        mask = rate.decode_mask(spec, decoded, tuple(stream.symbols.shape[-2:]))
        want = stream.full_mask()[0]
        got = torch.ones_like(want) if mask is None else mask.expand_as(want).to(torch.bool)
        assert torch.equal(got, want), f"decode_mask of stream {spec.name!r} differs from forward's"
        decoded[spec.name] = torch.where(want, stream.symbols[0], torch.zeros_like(stream.symbols[0]))
    recon = rate.reconstruct(decoded, q, hw)
    assert torch.equal(recon, out.y_hat[:1]), "reconstruct() differs from forward's y_hat"
    return out


def setup_rate(rate: Rate, quantizer: Quantizer | int | None, latent_channels: int = 4,
               factor: int = 8) -> list[StreamSpec]:  # fmt: skip
    """Set ``rate`` up as a ``Codec`` would (without an encoder), keeping its specs.

    ``quantizer`` is the quantizer, or just its alphabet size (None: unbounded).
    """
    parts: dict[str, Component] = {"rate": rate}
    if isinstance(quantizer, Quantizer):
        parts["quantizer"] = quantizer
        alphabet = quantizer.alphabet_size
    else:
        alphabet = quantizer
    ctx = SetupContext(latent_channels=latent_channels, alphabet=alphabet, downsampling_factor=factor,
                       parts=parts)  # fmt: skip
    specs = list(rate.setup(ctx))
    rate.specs = tuple(specs)
    return specs


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


def check_rate(rate: Rate, q: Quantizer, latent_channels: int = 4, factor: int = 8) -> None:
    """Specs; eval forward ⇄ decode_mask/reconstruct agree, before and after the training hooks."""
    specs = setup_rate(rate, q, latent_channels, factor)
    assert specs and all(isinstance(s, StreamSpec) for s in specs)
    assert len({s.name for s in specs}) == len(specs), "stream names must be unique"
    assert all((s.alphabet is None or s.alphabet >= 1) and s.channels >= 1 for s in specs)
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(1, latent_channels, 7, 5, generator=gen) * 3
    _check_rate_round(rate, q, specs, y)
    # Run the training hooks as the engine does, then check the masks again.
    ctx = TrainContext(total_epochs=2, total_steps=4)
    rate.train()
    q.train()
    rate.on_train_start(ctx)
    for epoch in range(2):
        ctx.epoch = epoch
        for _ in range(2):
            ctx.step += 1
            yb = torch.randn(2, latent_channels, 6, 6, generator=gen) * 3
            offset = rate.quantization_offset(q)
            yt = q(yb) if offset is None else q(yb - offset) + offset
            out = rate(yt, features_for(yb, ctx.step), q)
            rate.on_batch_end(ctx, out)
        rate.on_epoch_end(ctx)
    rate.on_train_end(ctx)
    _check_rate_round(rate, q, specs, y)
    tall = torch.randn(1, latent_channels, 11, 3, generator=gen) * 3
    _check_rate_round(rate, q, specs, tall)


# ---------------------------------------------------------------------------- coder
CODER_SPECS = [StreamSpec("side", 2, 3, side=True), StreamSpec("y", 4, 15)]


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


def _fit(coder: EntropyCoder, specs: Sequence[StreamSpec], gen: torch.Generator) -> None:
    """Fit the coder the way its ``fitting`` declaration says the engine will."""
    batches = [[Stream(s, _skewed(s, (2, s.channels, 6, 7), gen)) for s in specs] for _ in range(3)]
    if coder.fitting == "counted":
        coder.fit_begin()
        for streams in batches:
            coder.fit_observe(streams)
        coder.fit_end()
    elif coder.fitting == "trained":
        params = [p for p in coder.parameters() if p.requires_grad]
        assert params, "a 'trained' coder must have parameters to train"
        opt = torch.optim.Adam(params, lr=1e-2)
        coder.fit_begin()
        coder.train()
        for streams in batches * 3:
            loss = coder.fit_loss(streams)
            assert loss.dim() == 0 and torch.isfinite(loss), "fit_loss must be a finite scalar"
            opt.zero_grad()
            loss.backward()
            opt.step()
        coder.fit_end()
    else:
        assert coder.fitting == "none", f"fitting must be counted, trained or none, not {coder.fitting!r}"


def check_coder(
    make: Callable[[], EntropyCoder],
    specs: Sequence[StreamSpec] = CODER_SPECS,
    rate: Rate | None = None,
) -> None:
    """Bit-exact coding with and without masks; honest likelihoods; masked positions are free.

    Every stream is coded with the streams before it as its ``context`` (as the ``Codec``
    does), and the likelihoods are held to the coder's claim: ``likelihoods_exact`` coders
    cost what their likelihoods say, up to termination words; estimating coders within
    their ``likelihood_tolerance``. A coder that codes with a rate plugin's density models
    (``requires`` a rate) is given that ``rate``, with ``specs`` from its set-up.
    """
    gen = torch.Generator().manual_seed(0)
    coder = make()
    setup_coder(coder, specs, rate)
    _fit(coder, specs, gen)
    assert coder.fitting == "none" or coder.fitted, "the coder says it is not fitted after fitting"
    coder.eval()
    context: dict[str, Stream] = {}
    for spec in specs:
        shape = (spec.channels, 9, 11)
        sym = _skewed(spec, shape, gen)
        ctx = dict(context)
        # no mask
        data = coder.encode(Stream(spec, sym), ctx)
        assert isinstance(data, bytes)
        assert torch.equal(coder.decode(data, spec, shape, None, ctx), sym), "not bit-exact without a mask"
        assert torch.equal(coder.decode(data, spec, shape, None, ctx), sym), "decoding is not repeatable"
        # random mask
        mask = torch.rand(shape, generator=gen) < 0.4
        data = coder.encode(Stream(spec, sym, mask), ctx)
        dec = coder.decode(data, spec, shape, mask, ctx)
        assert dec.dtype == torch.int64, f"decode must return int64 symbols, got {dec.dtype}"
        assert dec.shape == shape, f"decode must return shape {shape}, got {tuple(dec.shape)}"
        assert torch.equal(dec[mask], sym[mask]), "not bit-exact with a mask"
        assert not dec[~mask].any(), "masked positions must decode to 0"
        # masked positions cost nothing and are never read
        other = torch.randint(0, spec.alphabet or 9, shape, generator=gen) - (0 if spec.alphabet else 4)
        changed = torch.where(mask, sym, other)
        assert coder.encode(Stream(spec, changed, mask), ctx) == data, "masked symbols changed the bytes"
        # a mask broadcast over positions (whole channels)
        cmask = torch.zeros(spec.channels, 1, 1, dtype=torch.bool)
        cmask[0] = True
        data_c = coder.encode(Stream(spec, sym, cmask), ctx)
        dec_c = coder.decode(data_c, spec, shape, cmask, ctx)
        assert torch.equal(dec_c[0], sym[0]) and not dec_c[1:].any(), "a (C, 1, 1) mask is not honoured"
        # nothing sent
        none = torch.zeros(shape, dtype=torch.bool)
        assert not coder.decode(coder.encode(Stream(spec, sym, none), ctx), spec, shape, none, ctx).any()
        # likelihoods: 1 where masked, in (0, 1] elsewhere, batch shaped
        batch = torch.stack([sym, changed])
        bmask = torch.stack([mask, mask])
        bctx = {k: Stream(v.spec, torch.stack([v.symbols, v.symbols]),
                          None if v.mask is None else torch.stack([v.full_mask()] * 2))
                for k, v in ctx.items()}  # fmt: skip
        lk = coder.likelihoods(Stream(spec, batch, bmask), bctx)
        assert lk.shape == batch.shape, f"likelihoods must have the symbols' shape {tuple(batch.shape)}"
        assert torch.all(lk[~bmask] == 1), "likelihood must be 1 at masked positions"
        assert torch.all(lk[bmask] > 0) and torch.all(lk[bmask] <= 1), "likelihoods outside (0, 1]"
        lk_full = coder.likelihoods(Stream(spec, sym[None]), {k: Stream(v.spec, v.symbols[None],
                                    None if v.mask is None else v.full_mask()[None]) for k, v in ctx.items()})
        assert torch.all(lk_full > 0) and torch.all(lk_full <= 1), "likelihoods outside (0, 1]"
        # honest, as declared: the estimate is what the file costs
        bits = float(-torch.log2(lk[0][mask].double()).sum())
        actual = 8 * len(data)
        assert math.isfinite(bits), "likelihoods give infinite bits"
        slack = 64 + 0.02 * bits
        if not coder.likelihoods_exact:
            slack = max(slack, coder.likelihood_tolerance * bits + 64)
        assert abs(actual - bits) <= slack, (
            f"likelihoods say {bits:.0f} bits, the file has {actual} "
            f"({'exact' if coder.likelihoods_exact else 'estimate'} claimed)"
        )
        context[spec.name] = Stream(spec, torch.where(mask, sym, 0), mask)
