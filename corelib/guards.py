"""Cheap run-time checks of what components return: types, dtypes and shapes, never values.

Every check reads tensor metadata only (O(1) per call), so the data path keeps them on. A
component that breaks its contract is stopped where it does, with a :class:`PluginError` that
names it, its origin and the call, instead of failing later somewhere else ("internal error")
or, worse, writing a file that decodes to something else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from codec_lab.corelib.contracts.rate import RateOutput
from codec_lab.corelib.errors import PluginError
from codec_lab.corelib.streams import Stream, StreamSpec

__all__ = ["Blame", "shape_text"]


def shape_text(shape: Sequence[int]) -> str:
    """``(1, 4, 6, 5)``."""
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def _what(value: Any) -> str:
    """A short description of a returned value, for messages."""
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        return f"{'an' if dtype[0] in 'aeiou' else 'a'} {dtype} tensor {shape_text(value.shape)}"
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


@dataclass(frozen=True)
class Blame:
    """One component of a codec: whom a broken contract is reported against.

    Attributes:
        kind: ``encoder``, ``quantizer``, ``rate``, ``coder`` or ``decoder``.
        name: its registry name.
        origin: where it comes from (``dist==version``, ``built-in``, ``CODEC_PLUGINS``).
    """

    kind: str
    name: str
    origin: str

    def error(self, call: str, problem: str, fix: str) -> PluginError:
        return PluginError(self.kind, self.name, call, self.origin, problem, fix)

    # ---------------------------------------------------------------- set-up
    def specs(self, specs: Any) -> tuple[StreamSpec, ...]:
        """A rate's ``setup`` result: StreamSpecs with unique names, sane channels and alphabet."""
        fix = ('return a list of StreamSpec(name, channels, alphabet) in coding order, e.g. '
               '[StreamSpec("y", ctx.latent_channels, ctx.alphabet)]')  # fmt: skip
        if not isinstance(specs, (list, tuple)) or not specs:
            raise self.error("setup", f"returned {_what(specs) if specs else 'no streams'}; a rate "
                             "declares at least one stream", fix)  # fmt: skip
        names: set[str] = set()
        for s in specs:
            if not isinstance(s, StreamSpec):
                raise self.error("setup", f"returned {_what(s)} among its streams", fix)
            if not isinstance(s.name, str) or not s.name:
                raise self.error("setup", f"declared a stream named {s.name!r}", "name every stream "
                                 "with a non-empty string, unique within the rate")  # fmt: skip
            if s.name in names:
                raise self.error("setup", f"declared stream {s.name!r} twice",
                                 "give every stream a unique name")
            names.add(s.name)
            if isinstance(s.channels, bool) or not isinstance(s.channels, int) or s.channels < 1:
                raise self.error("setup", f"declared stream {s.name!r} with channels={s.channels!r}",
                                 "channels must be a positive int (e.g. ctx.latent_channels)")
            if s.alphabet is not None and (isinstance(s.alphabet, bool) or not isinstance(s.alphabet, int)
                                           or s.alphabet < 1):  # fmt: skip
                raise self.error("setup", f"declared stream {s.name!r} with alphabet={s.alphabet!r}",
                                 "alphabet must be a positive int (symbols in [0, alphabet)) or None "
                                 "(signed integers), e.g. ctx.alphabet")  # fmt: skip
        return tuple(specs)

    # ---------------------------------------------------------------- transforms
    def features(self, feats: Any, batch: int, channels: int, hw: tuple[int, int]) -> None:
        """An encoder's ``forward``: a dict of tensors with a (B, C, H/f, W/f) ``"y"``."""
        want = shape_text((batch, channels, *hw))
        fix = f'return {{"y": latent, ...}} with the latent shaped {want} (B, latent_channels, H/f, W/f)'
        if not isinstance(feats, Mapping):
            raise self.error("forward", f"returned {_what(feats)}, not a dict of features", fix)
        y = feats.get("y")
        if not isinstance(y, torch.Tensor):
            raise self.error("forward", f"returned keys {sorted(feats)} without a \"y\" tensor", fix)
        if tuple(y.shape) != (batch, channels, *hw):
            raise self.error("forward", f'returned "y" shaped {shape_text(y.shape)}; expected {want}',
                             fix + " (latent_channels and downsampling_factor must say what it returns)")
        for k, v in feats.items():
            if not isinstance(v, torch.Tensor):
                raise self.error("forward", f"returned {_what(v)} for feature {k!r}",
                                 "return only tensors, batch first")  # fmt: skip

    def synthesis(self, x_hat: Any, want: tuple[int, ...]) -> None:
        """A decoder's ``forward``: images (B, 3, H, W), H and W the latent's times f."""
        if not isinstance(x_hat, torch.Tensor) or tuple(x_hat.shape) != want:
            raise self.error("forward", f"returned {_what(x_hat)}; expected images shaped {shape_text(want)}",
                             "return (B, 3, h·f, w·f) images for a (B, C, h, w) latent")  # fmt: skip

    # ---------------------------------------------------------------- rate
    def rate_output(self, out: Any, specs: Sequence[StreamSpec], y_shape: tuple[int, ...]) -> None:
        """A rate's ``forward``: a RateOutput whose streams follow the declared specs."""
        if not isinstance(out, RateOutput):
            raise self.error("forward", f"returned {_what(out)}", "return a RateOutput(y_hat, rate_loss, "
                             "streams, ...)")  # fmt: skip
        if not isinstance(out.y_hat, torch.Tensor) or tuple(out.y_hat.shape) != y_shape:
            raise self.error("forward", f"returned y_hat as {_what(out.y_hat)}; expected the latent's "
                             f"shape {shape_text(y_shape)}", "y_hat is the decoder input, shaped like y")
        if not isinstance(out.rate_loss, torch.Tensor) or out.rate_loss.numel() != 1:
            raise self.error("forward", f"returned rate_loss as {_what(out.rate_loss)}",
                             "return a scalar tensor (torch.zeros(()) when the rate adds none)")
        names = [s.spec.name if isinstance(s, Stream) else None for s in out.streams]
        declared = [s.name for s in specs]
        if names != declared:
            raise self.error("forward", f"returned streams {names}; its setup declared {declared}",
                             "build one Stream per declared spec, in order, from self.spec(name)")
        b, _, h, w = y_shape
        for s in out.streams:
            want = (b, s.spec.channels, h, w)
            if not isinstance(s.symbols, torch.Tensor) or s.symbols.dtype != torch.int64 \
                    or tuple(s.symbols.shape) != want:  # fmt: skip
                raise self.error("forward", f"returned stream {s.spec.name!r} symbols as "
                                 f"{_what(s.symbols)}; expected int64 {shape_text(want)}",
                                 "build symbols with quantizer.to_symbols() (int64, (B, C, h, w))")
            self.mask(s.mask, want, "forward", s.spec.name)

    def mask(self, mask: Any, shape: tuple[int, ...], call: str, stream: str) -> None:
        """A mask: None or a bool tensor that broadcasts to the stream's ``shape``."""
        if mask is None:
            return
        ok = (isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.dim() <= len(shape)
              and all(m in (1, s) for m, s in zip(reversed(mask.shape), reversed(shape), strict=False)))
        if not ok:
            raise self.error(call, f"returned the mask of stream {stream!r} as {_what(mask)}; it must "
                             f"be bool and broadcast to {shape_text(shape)}",
                             "return None (everything sent) or a bool mask, e.g. (C, 1, 1) for whole "
                             "channels")  # fmt: skip

    def reconstruct(self, y_hat: Any, channels: int, hw: tuple[int, int]) -> None:
        """A rate's ``reconstruct``: the (1, C, h, w) decoder input."""
        want = (1, channels, *hw)
        if not isinstance(y_hat, torch.Tensor) or tuple(y_hat.shape) != want:
            raise self.error("reconstruct", f"returned {_what(y_hat)}; expected {shape_text(want)}",
                             "return the decoder input for one image, (1, latent_channels, h, w)")

    # ---------------------------------------------------------------- coder
    def likelihoods(self, lik: Any, stream: Stream) -> None:
        """A coder's ``likelihoods``: one probability per symbol."""
        want = tuple(stream.symbols.shape)
        if not isinstance(lik, torch.Tensor) or tuple(lik.shape) != want:
            raise self.error("likelihoods", f"returned {_what(lik)} for stream {stream.spec.name!r}; "
                             f"expected one probability per symbol, {shape_text(want)}",
                             "return a float tensor shaped like stream.symbols (1 where masked)")

    def encoded(self, data: Any, spec: StreamSpec) -> bytes:
        """A coder's ``encode``: bytes."""
        if not isinstance(data, bytes):
            raise self.error("encode", f"returned {_what(data)} for stream {spec.name!r}",
                             "return bytes (e.g. bytes(buffer))")
        return data

    def decoded(self, sym: Any, spec: StreamSpec, shape: tuple[int, int, int]) -> None:
        """A coder's ``decode``: (C, h, w) int64 symbols."""
        if isinstance(sym, torch.Tensor) and sym.dtype == torch.int64 and tuple(sym.shape) == shape:
            return
        if isinstance(sym, torch.Tensor) and tuple(sym.shape) == shape:
            fix = "return symbols.to(torch.int64)"
        else:
            fix = f"return the stream's symbols shaped (C, h, w) = {shape_text(shape)}, 0 where masked"
        raise self.error("decode", f"returned {_what(sym)} for stream {spec.name!r}; decode must "
                         f"return int64 symbols shaped {shape_text(shape)}", fix)  # fmt: skip
