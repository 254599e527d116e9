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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from codec_lab.corelib.contracts import (
    KINDS,
    NAME_PATTERN,
    Baseline,
    BaselineInfo,
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
from codec_lab.corelib.errors import ConfigError
from codec_lab.corelib.params import check_value, schema_of, validate_params
from codec_lab.corelib.streams import Stream, StreamSpec

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

T = TypeVar("T")


# ---------------------------------------------------------------------------- rules
class ContractViolation(AssertionError):
    """A broken contract rule.

    Attributes:
        rule: the rule's name, e.g. ``decode returns int64 symbols``.
        detail: what happened, e.g. ``decode returned torch.float32``.
        hint: what to fix (may be empty).
    """

    def __init__(self, rule: str, detail: str, hint: str = "") -> None:
        self.rule, self.detail, self.hint = rule, detail, hint
        text = f'rule "{rule}" failed: {detail}'
        super().__init__(f"{text} (hint: {hint})" if hint else text)


class RuleSkipped(Exception):  # noqa: N818 -- not an error: a rule that did not run, and why
    """Raised by a rule that does not apply to this component, or that needs a rule which failed;
    its message says why."""


@dataclass(frozen=True)
class Rule:
    """One named contract rule; ``run()`` raises :class:`ContractViolation` (or the plugin's own
    exception) when it is broken and :class:`RuleSkipped` when it does not apply."""

    name: str
    run: Callable[[], None]


def require(condition: object, rule: str, detail: str, hint: str = "") -> None:
    """Raise :class:`ContractViolation` ``(rule, detail, hint)`` unless ``condition`` holds."""
    if not condition:
        raise ContractViolation(rule, detail, hint)


def run_rules(rules: Iterable[Rule]) -> None:
    """Run ``rules`` in order and raise the first failure; rules that do not apply are passed over."""
    for rule in rules:
        try:
            rule.run()
        except RuleSkipped:
            continue


class _Shared(Generic[T]):
    """What several rules use, made once by the first that asks; when making it failed, the
    others are skipped (the failure is reported once, by ``rule``)."""

    def __init__(self, make: Callable[[], T], rule: str) -> None:
        self._make, self._rule = make, rule
        self._value: T | None = None
        self._done = False
        self._skip: str | None = None

    def __call__(self) -> T:
        if self._skip is not None:
            raise RuleSkipped(self._skip)
        if not self._done:
            try:
                self._value = self._make()
            except RuleSkipped as e:
                self._skip = str(e)
                raise
            except BaseException:
                self._skip = f'not run: rule "{self._rule}" failed'
                raise
            self._done = True
        return self._value  # type: ignore[return-value]


def _shape(t: Any) -> str:
    return str(tuple(t.shape)) if hasattr(t, "shape") else type(t).__name__


def _is_tensor(t: Any) -> bool:
    return isinstance(t, torch.Tensor)


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


# ---------------------------------------------------------------------------- baseline
def photo(h: int, w: int, index: int = 0) -> np.ndarray:
    """An (h, w, 3) uint8 crop of a real photo shipped with the package (a Kodak image)."""
    from PIL import Image

    from codec_lab.corelib.images import sample_images

    paths = sample_images("held-out")
    with Image.open(paths[index % len(paths)]) as im:
        arr = np.asarray(im.convert("RGB"))
    reps = (-(-h // arr.shape[0]), -(-w // arr.shape[1]), 1)
    return np.ascontiguousarray(np.tile(arr, reps)[:h, :w])


def _settings(b: Baseline) -> list[float]:
    """The sweep's settings, plus both ends of the range."""
    out = [float(s) for s in b.sweep]
    for s in (b.low, b.high):
        if float(s) not in out:
            out.append(float(s))
    return out


def baseline_rules(make: Callable[[], Baseline]) -> list[Rule]:
    """The baseline contract: bytes out, the input's size back, files grow along the sweep,
    decoding from the bytes alone, determinism."""

    def prepare() -> Baseline:
        b = make()
        why = b.unavailable()
        if why:
            raise RuleSkipped(f"unavailable here: {why}")
        return b

    ready = _Shared(prepare, "is available here")
    sizes = ((48, 64), (37, 53))

    def available() -> None:
        ready()

    def returns_bytes() -> None:
        rule = "encode returns bytes and leaves the image unchanged"
        b = ready()
        img = photo(*sizes[0])
        for s in _settings(b):
            kept = img.copy()
            data = b.encode(img, s)
            require(isinstance(data, bytes) and len(data) > 0, rule,
                    f"encode at setting {s:g} returned {type(data).__name__}"
                    f"{' (empty)' if isinstance(data, bytes) else ''}", "return the whole file's bytes")
            require(np.array_equal(img, kept), rule, "encode modified the image it was given")

    def decodes() -> None:
        rule = "decode returns (H, W, 3) uint8 of the input size"
        b = ready()
        for h, w in sizes:
            img = photo(h, w, 1)
            mid = float(b.sweep[len(b.sweep) // 2])
            out = b.decode(b.encode(img, mid))
            require(isinstance(out, np.ndarray), rule,
                    f"decode returned {type(out).__name__}, not a numpy array")
            require(out.dtype == np.uint8 and out.shape == (h, w, 3), rule,
                    f"decode returned {out.shape} {out.dtype} for a {h}×{w} image; "
                    f"expected ({h}, {w}, 3) uint8",
                    "return what a decoder of the file shows: the original size, 8-bit RGB")

    def from_bytes() -> None:
        b = ready()
        img = photo(*sizes[0])
        data = b.encode(img, float(b.sweep[0]))
        a1 = b.decode(data)
        a2 = make().decode(data)
        require(np.array_equal(np.asarray(a1), np.asarray(a2)), "decode reads the file, not memory",
                "a fresh instance decodes the same bytes to another image",
                "decode must use nothing but the bytes (no state kept from encode)")

    def grows() -> None:
        rule = "files grow along the sweep"
        b = ready()
        img = photo(96, 128, 1)
        prev: tuple[float, int] | None = None
        for s in (float(v) for v in b.sweep):
            n = len(b.encode(img, s))
            if prev is not None:
                require(n >= prev[1] * 0.98 - 16, rule,
                        f"setting {s:g} gave {n} bytes, the setting before it in the sweep ({prev[0]:g}) "
                        f"{prev[1]} bytes", "order `sweep` from the smallest files to the largest (and set "
                        "larger_is_smaller for a setting like a compression ratio)")
            prev = (s, n)

    def deterministic() -> None:
        rule = "deterministic"
        b = ready()
        img = photo(*sizes[0])
        s = float(b.sweep[len(b.sweep) // 2])
        d1, d2 = b.encode(img, s), b.encode(img, s)
        require(d1 == d2, rule, "encoding the same image twice gave different bytes",
                "seed any randomness, or use none")
        require(np.array_equal(b.decode(d1), b.decode(d1)), rule, "decoding the same bytes twice differs")

    return [Rule("is available here", available),
            Rule("encode returns bytes and leaves the image unchanged", returns_bytes),
            Rule("decode returns (H, W, 3) uint8 of the input size", decodes),
            Rule("decode reads the file, not memory", from_bytes),
            Rule("files grow along the sweep", grows),
            Rule("deterministic", deterministic)]  # fmt: skip


def check_baseline(baseline: Baseline | type[Baseline]) -> None:
    """Bytes out; the input's size back as uint8 RGB; files grow along ``sweep``; decoding from
    the bytes alone; deterministic. An unavailable baseline (``unavailable()``) is not checked."""
    cls = baseline if isinstance(baseline, type) else type(baseline)
    given = [] if isinstance(baseline, type) else [baseline]
    run_rules(baseline_rules(lambda: given.pop() if given else cls()))
