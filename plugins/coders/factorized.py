"""``factorized``: codes with the ``entropy`` rate's own density (CompressAI's rANS tables).

The tables are the ``EntropyBottleneck``'s 16-bit quantized CDFs built by ``update()``; the
coder is CompressAI's rANS (``compressai.ans``) with its escape coding for values outside the
tables. With no mask the bytes are exactly what ``EntropyBottleneck.compress`` writes, so a
``gdn + noise + entropy + factorized`` codec and CompressAI's ``FactorizedPrior`` with the
same weights produce identical files. Nothing is fitted after training.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from codec_lab import hookimpl
from codec_lab.contracts import Component, Context, EntropyCoder, Rate, SetupContext, Stream, StreamSpec
from codec_lab.corelib.entropy_models import (
    decode_symbols,
    encode_symbols,
    table_likelihoods,
    table_max_symbols,
)
from codec_lab.errors import ConfigError

__all__ = ["FactorizedCoder"]


class FactorizedCoder(EntropyCoder):
    """rANS with the rate plugin's ``EntropyBottleneck`` tables (one per channel)."""

    name = "factorized"
    summary = "the entropy rate's own factorized density, CompressAI rANS tables"
    version = "0.1"
    requires = {"rate": ("entropy",)}
    fitting = "none"

    def __init__(self) -> None:
        super().__init__()
        self.specs: dict[str, StreamSpec] = {}
        # The models belong to the rate plugin: a plain dict keeps them out of this module's
        # state dict, so their parameters are saved once, under the rate.
        self.models: dict[str, torch.nn.Module] = {}

    def check_composition(self, parts: Mapping[str, Component]) -> str | None:
        if parts["quantizer"].alphabet_size is not None:
            return ("factorized codes signed integer symbols on the density's grid: use "
                    "quantizer noise (for a finite alphabet use coder histogram)")  # fmt: skip
        return None

    def setup(self, ctx: SetupContext) -> None:
        self.specs = {s.name: s for s in ctx.specs}
        rate = ctx.parts["rate"]
        assert isinstance(rate, Rate)
        models = dict(rate.entropy_models())
        missing = [n for n in self.specs if n not in models]
        if missing:
            raise ConfigError(
                f"factorized: rate {type(rate).name!r} has no entropy model for stream(s) "
                f"{', '.join(missing)}", "choose rate entropy",
            )  # fmt: skip
        self.models = {n: models[n] for n in self.specs}

    def _model(self, name: str) -> torch.nn.Module:
        if name not in self.models:
            raise ConfigError(f"factorized: no entropy model for stream {name!r}",
                              "compose the coder with rate entropy")  # fmt: skip
        model = self.models[name]
        model.update()  # builds missing tables, rebuilds stale ones (with a warning)
        return model

    def likelihoods(self, stream: Stream, context: Context | None = None) -> torch.Tensor:
        sym = stream.symbols if stream.symbols.dim() == 4 else stream.symbols.unsqueeze(0)
        p = table_likelihoods(self._model(stream.spec.name), sym).view_as(stream.symbols)
        if stream.mask is None:
            return p
        return torch.where(stream.full_mask(), p, torch.ones_like(p))

    def encode(self, stream: Stream, context: Context | None = None) -> bytes:
        return encode_symbols(self._model(stream.spec.name), stream.symbols, stream.mask)

    def decode(
        self,
        data: bytes,
        spec: StreamSpec,
        shape: tuple[int, int, int],
        mask: torch.Tensor | None,
        context: Context | None = None,
    ) -> torch.Tensor:
        return decode_symbols(self._model(spec.name), data, shape, mask)

    def max_symbols(self, n_bytes: int, spec: StreamSpec) -> int | None:
        return table_max_symbols(self._model(spec.name), n_bytes)

    def fit_end(self) -> None:
        """Freeze the tables: rebuild them from the density as it is now."""
        for model in self.models.values():
            model.update(force=True)

    @property
    def fitted(self) -> bool:
        return bool(self.models) and all(m._offset.numel() > 0 for m in self.models.values())


@hookimpl
def codec_register_coders() -> list[type[EntropyCoder]]:
    return [FactorizedCoder]
