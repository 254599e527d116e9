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

import re
from collections.abc import Callable
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
)
from codec_lab.corelib.params import validate_params
from codec_lab.corelib.rate_rules import check_rate, features_for, rate_rules, setup_rate

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
