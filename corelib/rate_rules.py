"""Contract rules of rate strategies: declared streams, the decoder's side (``decode_mask``,
``reconstruct``) agreeing with ``forward`` before and after the training hooks and at other
latent sizes, report columns, the default sweep.

Part of the contract checks of :mod:`codec_lab.corelib.testing`, which re-exports them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from codec_lab.corelib.contract_rules import (
    ContractViolation,
    Rule,
    _is_tensor,
    _shape,
    _Shared,
    require,
    run_rules,
)
from codec_lab.corelib.contracts import (
    Component,
    Quantizer,
    Rate,
    RateOutput,
    SetupContext,
    TrainContext,
)
from codec_lab.corelib.errors import ConfigError
from codec_lab.corelib.params import check_value, schema_of
from codec_lab.corelib.streams import StreamSpec

__all__ = ["check_rate", "features_for", "rate_rules", "setup_rate"]


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
            if col.bounds is not None:
                lo, hi = col.bounds
                require(lo <= float(value) <= hi, rule, f"info[{col.key!r}] is {value!r}, outside the "
                        f"column's declared bounds [{lo:g}, {hi:g}]")  # fmt: skip

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
