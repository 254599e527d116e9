"""Reusable contract checks: one function per plugin kind, each made of named rules.

A plugin author runs them in their own tests (the project's contract tests, parametrized over
every registered component, call the same functions)::

    from codec_lab.testing import check_coder, check_quantizer
    check_quantizer(MyQuantizer())
    check_coder(MyCoder)

Each check raises :class:`ContractViolation` (an ``AssertionError``) at the first broken rule:
it names the rule, says what happened and what to fix. The ``*_rules`` functions give the same
checks as a list of :class:`Rule` objects that run on their own, so that every rule can be
run and reported (``codec plugins check NAME`` does that).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

from codec_lab.corelib.baseline_rules import baseline_rules, check_baseline, photo
from codec_lab.corelib.coder_rules import CODER_SPECS, check_coder, coder_rules, setup_coder
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
    KINDS,
    NAME_PATTERN,
    Baseline,
    BaselineInfo,
    Component,
    ComponentInfo,
    Decoder,
    Encoder,
    Quantizer,
    Rate,
    RateOutput,
    SetupContext,
    TrainContext,
)
from codec_lab.corelib.errors import ConfigError
from codec_lab.corelib.params import check_value, schema_of, validate_params
from codec_lab.corelib.streams import StreamSpec

__all__ = [
    "CODER_SPECS",
    "VERSION",
    "ContractViolation",
    "Rule",
    "RuleSkipped",
    "baseline_rules",
    "check_baseline",
    "check_coder",
    "check_decoder",
    "check_encoder",
    "check_info",
    "check_quantizer",
    "check_rate",
    "check_state_dict_round_trip",
    "coder_rules",
    "construct",
    "decoder_rules",
    "encoder_rules",
    "features_for",
    "photo",
    "quantizer_rules",
    "rate_rules",
    "require",
    "run_rules",
    "setup_coder",
    "setup_rate",
]

VERSION = re.compile(r"^\d+(\.\d+)*$")



def construct(info: ComponentInfo, params: dict[str, Any] | None = None) -> Component:
    """Validate ``params`` against the component's signature and construct it."""
    full = validate_params(info.cls, params or {}, f"model.{info.kind}")
    return info.cls(**full)


# ---------------------------------------------------------------------------- every kind
def check_info(info: ComponentInfo | BaselineInfo) -> None:
    """Registry metadata: kebab-case name, one-line summary, dotted version, its contract."""
    rule = "registry metadata"
    what = f"{info.kind} {info.name}"
    require(NAME_PATTERN.fullmatch(info.name), rule, f"name {info.name!r} is not lowercase kebab-case",
            "letters, digits and single hyphens, e.g. 'my-rate'")
    require(info.cls.name == info.name, rule, "registered name differs from the class attribute `name`")
    require(info.summary.strip(), rule, f"{what} has no summary", "set the class attribute `summary`")
    require("\n" not in info.summary, rule, "summary must be one line")
    require(VERSION.match(info.version), rule, f"version {info.version!r} is not dotted numbers",
            "e.g. version = '0.1'")
    require(info.source, rule, "component has no source")
    if info.kind == "baseline":
        require(issubclass(info.cls, Baseline), rule, "does not subclass Baseline")
        return
    require(info.kind in KINDS, rule, f"unknown kind {info.kind!r}")
    require(issubclass(info.cls, KINDS[info.kind]), rule, f"does not subclass {KINDS[info.kind].__name__}")
    require(info.cls.kind == info.kind, rule, f"class kind {info.cls.kind!r} is not {info.kind!r}")
    for other, names in info.cls.requires.items():
        require(other in KINDS, rule, f"requires names unknown kind {other!r}", f"kinds: {', '.join(KINDS)}")
        require(names and all(isinstance(n, str) for n in names), rule,
                f"requires[{other!r}] must be a non-empty tuple of names, got {names!r}")


def _perturb(module: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point() and t.numel():
                t.add_(torch.rand(t.shape, generator=gen, dtype=t.dtype))


def check_state_dict_round_trip(make: Callable[[], torch.nn.Module]) -> None:
    """A fresh instance loads another instance's (changed) state dict and then equals it."""
    rule = "state dict round trip"
    hint = ("create every buffer and parameter in __init__ or setup(), never on first use, "
            "so that a fresh instance has the same state dict keys")
    a, b = make(), make()
    _perturb(a)
    sa = a.state_dict()
    b.load_state_dict(sa)
    sb = b.state_dict()
    require(list(sa) == list(sb), rule,
            f"state dict keys differ after loading: {list(sa)} vs {list(sb)}", hint)
    for key in sa:
        if not _is_tensor(sa[key]):
            continue
        require(sa[key].dtype == sb[key].dtype, rule, f"{key} changes dtype on loading "
                f"({sa[key].dtype} → {sb[key].dtype})")
        require(torch.equal(sa[key], sb[key]), rule, f"{key} differs after load_state_dict",
                "keep the state in buffers or parameters that load_state_dict restores")


# ---------------------------------------------------------------------------- transforms
def _encoder_input(enc: Encoder) -> torch.Tensor:
    f = enc.downsampling_factor
    h, w = 4 * max(f, 4), 3 * max(f, 8)
    least = int(getattr(enc, "min_input_size", 1) or 1)
    h, w = (max(s, -(-least // f) * f) for s in (h, w))
    return torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0))


def encoder_rules(make: Callable[[], Encoder]) -> list[Rule]:
    """The encoder contract: declarations, output shape and dtype, determinism in eval."""
    enc = _Shared(make, "declares latent_channels and downsampling_factor")

    def declares() -> None:
        e = enc()
        rule = "declares latent_channels and downsampling_factor"
        f, c = getattr(e, "downsampling_factor", None), getattr(e, "latent_channels", None)
        require(isinstance(f, int) and f >= 1, rule, f"downsampling_factor is {f!r}",
                "set self.downsampling_factor to the spatial factor f (an int >= 1) in __init__")
        require(isinstance(c, int) and c >= 1, rule, f"latent_channels is {c!r}",
                "set self.latent_channels (an int >= 1) in __init__")
        feats = tuple(e.features)
        require(feats and feats[0] == "y", rule, f"features {feats!r} must start with 'y'")

    def output() -> None:
        e = enc()
        rule = "encoder output shape and dtype"
        x = _encoder_input(e)
        e.eval()
        with torch.no_grad():
            feats = e(x)
        got = f"a dict without 'y' ({list(feats)})" if isinstance(feats, dict) else type(feats).__name__
        require(isinstance(feats, dict) and "y" in feats, rule, f"forward returned {got}",
                'return a dict {"y": latent, ...}')
        missing = [k for k in e.features if k not in feats]
        require(not missing, rule, f"forward does not return the declared features {missing}")
        y = feats["y"]
        f = e.downsampling_factor
        want = (2, e.latent_channels, x.shape[-2] // f, x.shape[-1] // f)
        require(_is_tensor(y) and tuple(y.shape) == want, rule,
                f"y is {_shape(y)} for a {tuple(x.shape)} input; expected {want}",
                "y must be (B, latent_channels, H/f, W/f) with f = downsampling_factor")
        require(y.is_floating_point(), rule, f"y has dtype {y.dtype}", "return a floating-point latent")

    def deterministic() -> None:
        e = enc()
        x = _encoder_input(e)
        e.eval()
        with torch.no_grad():
            a, b = e(x)["y"], e(x)["y"]
        require(torch.equal(a, b), "eval-mode encoder is deterministic",
                "two eval forwards of the same images differ",
                "no noise or dropout in eval mode (check self.training)")

    return [Rule("declares latent_channels and downsampling_factor", declares),
            Rule("encoder output shape and dtype", output),
            Rule("eval-mode encoder is deterministic", deterministic)]  # fmt: skip


def check_encoder(enc: Encoder) -> dict[str, torch.Tensor]:
    """``forward`` maps (B, 3, H, W) to ``{"y": (B, C, H/f, W/f)}``, deterministically in eval."""
    run_rules(encoder_rules(lambda: enc))
    with torch.no_grad():
        return enc(_encoder_input(enc))


def decoder_rules(make: Callable[[], Decoder], latent_channels: int, factor: int | None) -> list[Rule]:
    """The decoder contract: (B, C, h, w) → (B, 3, h·f, w·f), finite, deterministic in eval."""
    y = torch.randn(2, latent_channels, 3, 4, generator=torch.Generator().manual_seed(0))
    dec = _Shared(make, "decoder output shape")

    def forward() -> torch.Tensor:
        d = dec()
        d.eval()
        with torch.no_grad():
            return d(y)

    def shape() -> None:
        rule = "decoder output shape"
        x = forward()
        require(_is_tensor(x) and x.dim() == 4 and tuple(x.shape[:2]) == (2, 3), rule,
                f"decoder gave {_shape(x)} for a {tuple(y.shape)} latent; expected (2, 3, h, w)",
                "return images (B, 3, H, W)")
        if factor is not None:
            want = (2, 3, 3 * factor, 4 * factor)
            require(tuple(x.shape) == want, rule,
                    f"decoder gave {tuple(x.shape)} for a {tuple(y.shape)} latent; expected {want}",
                    f"upsample by the encoder's downsampling_factor ({factor})")

    def finite() -> None:
        x = forward()
        require(_is_tensor(x) and x.is_floating_point() and bool(torch.isfinite(x).all()),
                "decoder output is finite", "the decoded images hold NaN or infinity, or are not float")

    def deterministic() -> None:
        require(torch.equal(forward(), forward()), "eval-mode decoder is deterministic",
                "two eval forwards of the same latent differ", "no noise or dropout in eval mode")

    return [Rule("decoder output shape", shape), Rule("decoder output is finite", finite),
            Rule("eval-mode decoder is deterministic", deterministic)]  # fmt: skip


def check_decoder(dec: Decoder, latent_channels: int, factor: int | None) -> None:
    """``forward`` maps (B, C, h, w) to (B, 3, h·f, w·f)."""
    run_rules(decoder_rules(lambda: dec, latent_channels, factor))


# ---------------------------------------------------------------------------- quantizer
def quantizer_rules(make: Callable[[], Quantizer]) -> list[Rule]:
    """The quantizer contract: symbols in [0, K) as int64, eval forward is what the decoder
    reconstructs, to/from_symbols inverse, a gradient in training."""
    q = _Shared(make, "alphabet_size is None or an int >= 2")

    def latent(quant: Quantizer) -> torch.Tensor:
        spread = (quant.alphabet_size or 16) / 1.5
        return torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(0)) * spread

    def alphabet() -> None:
        k = getattr(q(), "alphabet_size", "missing")
        require(k is None or (isinstance(k, int) and not isinstance(k, bool) and k >= 2),
                "alphabet_size is None or an int >= 2", f"alphabet_size is {k!r}",
                "set self.alphabet_size (K symbols, or None for unbounded integers)")

    def symbols() -> None:
        rule = "symbols are int64 in [0, K)"
        quant = q()
        y = latent(quant)
        quant.eval()
        with torch.no_grad():
            sym = quant.to_symbols(quant(y))
        require(_is_tensor(sym) and sym.dtype == torch.int64, rule,
                f"to_symbols returned {getattr(sym, 'dtype', type(sym).__name__)}",
                "return symbols as torch.int64 (e.g. .to(torch.int64))")
        require(sym.shape == y.shape, rule, f"to_symbols gave {_shape(sym)} for {tuple(y.shape)} values")
        k = quant.alphabet_size
        if k is not None:
            require(int(sym.min()) >= 0 and int(sym.max()) < k, rule,
                    f"symbols range over [{int(sym.min())}, {int(sym.max())}], outside [0, {k})",
                    "clamp the latent to the alphabet before mapping it to symbols")

    def consistent() -> None:
        quant = q()
        y = latent(quant)
        quant.eval()
        with torch.no_grad():
            hard = quant(y)
            again = quant.from_symbols(quant.to_symbols(hard)).to(hard.dtype)
        require(torch.equal(hard, again), "eval forward equals from_symbols(to_symbols(forward))",
                "eval forward differs from from_symbols(to_symbols(forward)): the decoder would see "
                "other values than training and evaluation",
                "in eval mode forward must return the decoder values")

    def quantize() -> None:
        rule = "quantize() is to_symbols(eval forward) and keeps the mode"
        quant = q()
        y = latent(quant)
        quant.eval()
        with torch.no_grad():
            sym = quant.to_symbols(quant(y))
        require(torch.equal(quant.quantize(y), sym), rule, "quantize() differs from to_symbols(eval forward)")
        quant.train()
        quant.quantize(y)
        require(quant.training, rule, "quantize() left the quantizer in eval mode")
        quant.eval()

    def inverse() -> None:
        quant = q()
        k = quant.alphabet_size
        every = torch.arange(k) if k is not None else torch.arange(-20, 21)
        with torch.no_grad():
            back = quant.to_symbols(quant.from_symbols(every))
        require(torch.equal(back, every), "to_symbols inverts from_symbols",
                "to/from_symbols not inverse: to_symbols(from_symbols(s)) != s for some symbols")

    def grid() -> None:
        quant = q()
        step = quant.grid_step
        if step is None:
            raise RuleSkipped("grid_step is None (uneven levels)")
        k = quant.alphabet_size
        s = torch.arange(k) if k is not None else torch.arange(-20, 21)
        with torch.no_grad():
            v = quant.from_symbols(s).double().flatten()
        diffs = v[1:] - v[:-1]
        require(torch.allclose(diffs, torch.full_like(diffs, float(step)), atol=1e-5), "grid_step is the "
                "spacing of the decoder values", f"from_symbols(s + 1) - from_symbols(s) ranges over "
                f"[{float(diffs.min()):.4g}, {float(diffs.max()):.4g}], not grid_step = {step}",
                "set grid_step = None for uneven levels")

    def gradient() -> None:
        rule = "training forward passes a gradient"
        quant = q()
        quant.train()
        yg = latent(quant).requires_grad_(True)
        out = quant(yg)
        require(_is_tensor(out) and out.shape == yg.shape, rule, f"training forward gave {_shape(out)} for "
                f"{tuple(yg.shape)}")
        require(out.requires_grad, rule, "training forward has no gradient",
                "use a straight-through estimator: hard + (y - y.detach())")
        out.sum().backward()
        require(yg.grad is not None and bool(torch.isfinite(yg.grad).all()), rule,
                "training forward has no (finite) gradient")
        quant.eval()

    return [Rule("alphabet_size is None or an int >= 2", alphabet),
            Rule("symbols are int64 in [0, K)", symbols),
            Rule("eval forward equals from_symbols(to_symbols(forward))", consistent),
            Rule("quantize() is to_symbols(eval forward) and keeps the mode", quantize),
            Rule("to_symbols inverts from_symbols", inverse),
            Rule("grid_step is the spacing of the decoder values", grid),
            Rule("training forward passes a gradient", gradient)]  # fmt: skip


def check_quantizer(q: Quantizer) -> None:
    """Eval forward is ``from_symbols(to_symbols(.))``; symbols lie in [0, K); training has grads."""
    run_rules(quantizer_rules(lambda: q))


# ---------------------------------------------------------------------------- rate
def features_for(y: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Encoder features for a latent ``y``: ``"y"`` and an ``"importance"`` map in (0, 1)
    covering every level (rates that need no map ignore it)."""
    gen = torch.Generator().manual_seed(seed)
    b, _, h, w = y.shape
    return {"y": y, "importance": torch.rand(b, 1, h, w, generator=gen).clamp(1e-3, 1 - 1e-3)}


def _check_rate_round(rate: Rate, q: Quantizer, specs: Sequence[StreamSpec], y: torch.Tensor,
                      rule: str = "forward and the decoder's side agree") -> RateOutput:  # fmt: skip
    rate.eval()
    q.eval()
    with torch.no_grad():
        offset = rate.quantization_offset(q)
        y_tilde = q(y) if offset is None else q(y - offset) + offset
        out = rate(y_tilde, features_for(y), q)
    require(isinstance(out, RateOutput), rule, f"forward returned {type(out).__name__}, not a RateOutput")
    require(_is_tensor(out.y_hat) and out.y_hat.shape == y.shape, rule,
            f"y_hat is {_shape(out.y_hat)} for a {tuple(y.shape)} latent")
    require(_is_tensor(out.rate_loss) and out.rate_loss.dim() == 0, rule,
            f"rate_loss is {_shape(out.rate_loss)}: rate_loss must be a scalar tensor")
    require([s.spec.name for s in out.streams] == [s.name for s in specs], rule,
            f"streams {[s.spec.name for s in out.streams]} out of spec order {[s.name for s in specs]}",
            "return the streams setup() declared, in that order")
    hw = (y.shape[-2], y.shape[-1])
    decoded: dict[str, torch.Tensor] = {}
    for spec, stream in zip(specs, out.streams, strict=True):
        sym = stream.symbols
        require(sym.dtype == torch.int64, rule, f"stream {spec.name!r} symbols are {sym.dtype}, not int64")
        require(tuple(sym.shape[:2]) == (y.shape[0], spec.channels), rule,
                f"stream {spec.name!r} symbols are {tuple(sym.shape)}; "
                f"expected ({y.shape[0]}, {spec.channels}, h, w)")
        sent = sym[stream.full_mask()]
        if sent.numel() and spec.alphabet is not None:
            require(int(sent.min()) >= 0 and int(sent.max()) < spec.alphabet, rule,
                    f"stream {spec.name!r} sends symbols outside its alphabet [0, {spec.alphabet})")
        mask = rate.decode_mask(spec, decoded, tuple(sym.shape[-2:]))
        want = stream.full_mask()[0]
        got = torch.ones_like(want) if mask is None else mask.expand_as(want).to(torch.bool)
        require(torch.equal(got, want), rule, f"decode_mask of stream {spec.name!r} differs from forward's",
                "the decoder must derive every mask from the streams before it or the model itself")
        decoded[spec.name] = torch.where(want, sym[0], torch.zeros_like(sym[0]))
    recon = rate.reconstruct(decoded, q, hw)
    require(_is_tensor(recon) and recon.shape == out.y_hat[:1].shape and torch.equal(recon, out.y_hat[:1]),
            rule, "reconstruct() differs from forward's y_hat",
            "reconstruct the decoder input from the decoded symbols exactly as forward does")
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


def rate_rules(make_rate: Callable[[], Rate], make_quantizer: Callable[[], Quantizer],
               latent_channels: int = 4, factor: int = 8) -> list[Rule]:  # fmt: skip
    """The rate contract: declared streams; forward ⇄ decode_mask/reconstruct agree before and
    after the training hooks and on other latent sizes; report columns; the default sweep."""
    gen = torch.Generator().manual_seed(0)

    def prepare() -> tuple[Rate, Quantizer, list[StreamSpec]]:
        rate, q = make_rate(), make_quantizer()
        return rate, q, setup_rate(rate, q, latent_channels, factor)

    ready = _Shared(prepare, "declares its streams")
    y = torch.randn(1, latent_channels, 7, 5, generator=gen) * 3

    def declares() -> None:
        rule = "declares its streams"
        _, _, specs = ready()
        require(specs and all(isinstance(s, StreamSpec) for s in specs), rule,
                "setup() must return a non-empty list of StreamSpec")
        require(len({s.name for s in specs}) == len(specs), rule, "stream names must be unique")
        for s in specs:
            require((s.alphabet is None or s.alphabet >= 1) and s.channels >= 1, rule,
                    f"stream {s.name!r} declares {s.channels} channels and alphabet {s.alphabet}")
        sides = [s.side for s in specs]
        require(sides == sorted(sides, reverse=True), rule, "side streams must come before the others")

    def agrees() -> None:
        rate, q, specs = ready()
        _check_rate_round(rate, q, specs, y)

    def hooks() -> None:
        rule = "forward and the decoder's side agree after the training hooks"
        rate, q, specs = ready()
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
        _check_rate_round(rate, q, specs, y, rule)

    def sizes() -> None:
        rate, q, specs = ready()
        for h, w in ((11, 3), (2, 9)):
            latent = torch.randn(1, latent_channels, h, w, generator=gen) * 3
            _check_rate_round(rate, q, specs, latent, "forward and the decoder's side agree on other sizes")

    def columns() -> None:
        rule = "declared report columns are reported"
        rate, q, _ = ready()
        rate.eval()
        q.eval()
        with torch.no_grad():
            offset = rate.quantization_offset(q)
            out = rate(q(y) if offset is None else q(y - offset) + offset, features_for(y), q)
        for col in type(rate).report_columns:
            require(col.key in out.info, rule, f"report column {col.key!r} is missing from RateOutput.info",
                    "put every declared column's value into info")
            value = out.info[col.key]
            try:
                ok = math.isfinite(float(value))
            except (TypeError, ValueError):
                ok = False
            require(ok, rule, f"info[{col.key!r}] is {value!r}, not a finite number")

    def sweep() -> None:
        rule = "default sweep names config keys"
        cls = type(ready()[0])
        schema = schema_of(cls)
        for key, values in cls.sweep.items():
            require(key in schema, rule, f"sweep key {key!r} is not a config key of {cls.name!r}",
                    f"config keys: {', '.join(schema) or '(none)'}")
            require(len(values) >= 1, rule, f"sweep of {key!r} has no values")
            for v in values:
                try:
                    check_value(schema[key][0], v, f"sweep.{key}")
                except ConfigError as e:
                    raise ContractViolation(rule, e.message) from None

    return [Rule("declares its streams", declares),
            Rule("forward and the decoder's side agree", agrees),
            Rule("forward and the decoder's side agree after the training hooks", hooks),
            Rule("forward and the decoder's side agree on other sizes", sizes),
            Rule("declared report columns are reported", columns),
            Rule("default sweep names config keys", sweep)]  # fmt: skip


def check_rate(rate: Rate, q: Quantizer, latent_channels: int = 4, factor: int = 8) -> None:
    """Specs; eval forward ⇄ decode_mask/reconstruct agree, before and after the training hooks."""
    run_rules(rate_rules(lambda: rate, lambda: q, latent_channels, factor))
