"""CompressAI's ``EntropyBottleneck`` made safe to code with, and rANS coding with its tables.

Rate plugins that own a learned factorized density hold a :class:`TrackedBottleneck`; coders
that code with a rate's density call :func:`encode_symbols`, :func:`decode_symbols` and
:func:`table_likelihoods`. The tables are CompressAI's own (``update()``: 16-bit quantized
CDFs with an escape symbol), so our bitstreams are byte-identical to CompressAI's.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from compressai.entropy_models import EntropyBottleneck

__all__ = [
    "StaleTablesWarning",
    "TrackedBottleneck",
    "coding_only",
    "decode_symbols",
    "encode_symbols",
    "table_max_symbols",
    "table_likelihoods",
]

# Constants of CompressAI's rANS escape coding (rans_interface.cpp): out-of-range values are
# sent as the escape symbol, then a count of 4-bit chunks (in 4-bit units), then the chunks.
_BYPASS_BITS = 4
_MAX_BYPASS = (1 << _BYPASS_BITS) - 1
_RANS_STATE_BYTES = 8

_CODING_ONLY: ContextVar[bool] = ContextVar("codec_lab_coding_only", default=False)


@contextmanager
def coding_only() -> Iterator[None]:
    """Within this block, inference passes (eval mode, no gradients) skip the density.

    For callers that keep only the coded streams of a pass and discard its likelihoods and
    rate loss (``Codec.streams``, which ``compress`` and the coder fit use; CompressAI's
    ``compress`` does not evaluate the density either): :meth:`TrackedBottleneck.likelihood`
    returns ones there instead of running the density network. Symbols never depend on
    likelihoods, so the bytes are unchanged.
    """
    token = _CODING_ONLY.set(True)
    try:
        yield
    finally:
        _CODING_ONLY.reset(token)


def _tensor_key(tensors: Any) -> tuple[Any, ...]:
    """Identity, version counter, storage and layout of tensors: changes when their values may
    have (in-place ops, optimizer steps, ``copy_``, replaced ``.data``)."""
    return tuple((id(t), t._version, t.data_ptr(), t.dtype, tuple(t.shape)) for t in tensors)


class StaleTablesWarning(UserWarning):
    """The coding tables were built for other weights than the ones now in the model."""


class TrackedBottleneck(EntropyBottleneck):
    """An ``EntropyBottleneck`` that knows whether its coding tables match its weights.

    CompressAI's ``update()`` does nothing when tables exist, even if training changed the
    density since. Here ``update()`` (force=False) rebuilds stale tables with a
    :class:`StaleTablesWarning`: encoder and decoder then still agree when both run on the
    same machine, but the saved model should be updated (``update(force=True)``) and saved
    so that every machine codes with the same tables. Loaded tables are trusted to match the
    weights loaded with them. The state dict is exactly ``EntropyBottleneck``'s.
    """

    def __init__(self, channels: int, **kwargs: Any) -> None:
        super().__init__(channels, **kwargs)
        self._tables_for: str | None = None
        self._fingerprint: tuple[tuple[Any, ...], str] | None = None  # (tensor key, digest)
        # After a load (children included: the density's ParameterLists load after us).
        self.register_load_state_dict_post_hook(TrackedBottleneck._after_load)

    def fingerprint(self) -> str:
        """Digest of the parameters the tables are computed from.

        Cached on the parameters' identity, version counter and storage, since every
        ``compress``/``decompress`` asks (through ``update()``); writes that bypass the version
        counter (through ``.data``) must be followed by ``update(force=True)``.
        """
        params = list(self.parameters())
        key = _tensor_key(params)
        cached = getattr(self, "_fingerprint", None)  # absent in modules pickled by older builds
        if cached is not None and cached[0] == key:
            return cached[1]
        h = hashlib.sha256()
        for p in params:
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        self._fingerprint = (key, h.hexdigest())
        return self._fingerprint[1]

    @property
    def has_tables(self) -> bool:
        """Whether ``update()`` has built (or a state dict loaded) coding tables."""
        return self._offset.numel() > 0

    @property
    def stale(self) -> bool:
        """Tables exist but were built for different parameters."""
        return self.has_tables and self._tables_for != self.fingerprint()

    def update(self, force: bool = False, update_quantiles: bool = False) -> bool:
        if not force and self.stale:
            warnings.warn(
                "entropy tables were built for other weights (the model changed after "
                "update()); rebuilding them now. Call update(force=True) and save the model "
                "so that encoder and decoder machines use the same tables.",
                StaleTablesWarning,
                stacklevel=2,
            )
            force = True
        updated = super().update(force=force, update_quantiles=update_quantiles)
        if updated:
            self._tables_for = self.fingerprint()
        return updated

    @staticmethod
    def _after_load(module: TrackedBottleneck, incompatible: Any) -> None:
        module._tables_for = module.fingerprint() if module.has_tables else None

    def medians(self) -> torch.Tensor:
        """The (C,) medians the latent is rounded around."""
        return self.quantiles[:, 0, 1].detach()

    def likelihood(self, values: torch.Tensor) -> torch.Tensor:
        """Bounded likelihood of (B, C, H, W) ``values`` (as ``forward`` computes it).

        Ones, without evaluating the density, in an inference pass inside :func:`coding_only`.
        """
        if _CODING_ONLY.get() and not self.training and not torch.is_grad_enabled():
            return values.new_ones(()).expand_as(values)
        c = values.shape[1]
        flat = values.transpose(0, 1).reshape(c, 1, -1)
        lk, _, _ = self._likelihood(flat)
        if self.use_likelihood_bound:
            lk = self.likelihood_lower_bound(lk)
        return lk.reshape(c, values.shape[0], *values.shape[2:]).transpose(0, 1)


def _tables(model: EntropyBottleneck) -> tuple[list[list[int]], list[int], list[int]]:
    if not model._offset.numel():
        raise ValueError("entropy model has no coding tables: call update() first")
    return (
        model._quantized_cdf.tolist(),
        model._cdf_length.reshape(-1).int().tolist(),
        model._offset.reshape(-1).int().tolist(),
    )


def _channel_indexes(shape: tuple[int, ...]) -> torch.Tensor:
    c = shape[0]
    return torch.arange(c, dtype=torch.int32).view(c, *([1] * (len(shape) - 1))).expand(shape)


def _dense(mask: torch.Tensor | None) -> torch.Tensor | None:
    """None for a mask that sends every position: the same positions, without boolean indexing
    (which costs more than the rest of the coding's tensor work on a full-size latent)."""
    return None if mask is None or bool(mask.all()) else mask


def encode_symbols(model: EntropyBottleneck, symbols: torch.Tensor, mask: torch.Tensor | None) -> bytes:
    """rANS-code (C, H, W) integer ``symbols`` (relative to the medians) with ``model``'s tables.

    Positions where ``mask`` is False are skipped. With no mask (or one that sends every
    position) the bytes are exactly what ``EntropyBottleneck.compress`` writes for the latent.
    """
    cdf, lengths, offsets = _tables(model)
    idx = _channel_indexes(tuple(symbols.shape))
    mask = _dense(mask)
    if mask is not None:
        keep = mask.expand_as(symbols).to(torch.bool)
        sym, idx = symbols[keep], idx[keep]
    else:
        sym, idx = symbols.reshape(-1), idx.reshape(-1)
    if not sym.numel():  # nothing sent costs nothing (and the rANS extension crashes on it)
        return b""
    return model.entropy_coder.encode_with_indexes(
        sym.to(torch.int32).tolist(), idx.tolist(), cdf, lengths, offsets
    )


def decode_symbols(
    model: EntropyBottleneck, data: bytes, shape: tuple[int, int, int], mask: torch.Tensor | None
) -> torch.Tensor:
    """Inverse of :func:`encode_symbols`: (C, H, W) int64 symbols, 0 where masked."""
    cdf, lengths, offsets = _tables(model)
    idx = _channel_indexes(shape)
    mask = _dense(mask)
    if mask is not None:
        keep = mask.expand(shape).to(torch.bool)
        idx = idx[keep]
    if not idx.numel():
        if data:
            raise ValueError(f"{len(data)} bytes where no symbol is sent")
        return torch.zeros(shape, dtype=torch.int64)
    # rANS starts by reading its 8-byte state; the extension does not check lengths.
    if len(data) < _RANS_STATE_BYTES or len(data) % 4:
        raise ValueError(f"{len(data)} bytes cannot be an rANS stream (whole 32-bit words, "
                         f"at least {_RANS_STATE_BYTES} bytes)")
    values = model.entropy_coder.decode_with_indexes(data, idx.reshape(-1).tolist(), cdf, lengths, offsets)
    vals = torch.tensor(values, dtype=torch.int64)
    if mask is None:
        return vals.reshape(shape)
    out = torch.zeros(shape, dtype=torch.int64)  # masked positions stay 0
    out[keep] = vals
    return out


def _escape_bits(raw: torch.Tensor) -> torch.Tensor:
    """Bits of the bypass part that follows an escape symbol, for raw values ``raw`` >= 0."""
    n = torch.zeros_like(raw)
    while True:
        more = (raw >> (n * _BYPASS_BITS)) != 0
        if not more.any():
            break
        n = n + more.to(n.dtype)
    return _BYPASS_BITS * (n // _MAX_BYPASS + 1) + _BYPASS_BITS * n


def table_max_symbols(model: EntropyBottleneck, n_bytes: int) -> int | None:
    """The most symbols ``n_bytes`` of rANS can carry with ``model``'s tables (None: no tables).

    Every symbol costs at least the bits of the most probable entry of any channel's table;
    the 8-byte rANS state and word padding are added as slack.
    """
    cdf = model._quantized_cdf.to(torch.int64)
    if cdf.numel() == 0:
        return None
    top = int((cdf[:, 1:] - cdf[:, :-1]).max())
    precision = 1 << model.entropy_coder_precision
    if top >= precision:
        return None
    min_bits = -math.log2(top / precision)
    return int((8 * n_bytes + 8 * _RANS_STATE_BYTES + 32) / min_bits) + 1


def table_likelihoods(model: EntropyBottleneck, symbols: torch.Tensor) -> torch.Tensor:
    """Probability the rANS coder gives (B, C, H, W) ``symbols`` with ``model``'s tables.

    In-range symbols cost their 16-bit quantized frequency; out-of-range ones the escape
    frequency times the bypass bits, exactly as CompressAI's coder writes them.
    """
    cdf = model._quantized_cdf.to(torch.int64).cpu()
    lengths = model._cdf_length.to(torch.int64).cpu()
    offsets = model._offset.to(torch.int64).cpu()
    precision = float(1 << model.entropy_coder_precision)
    c = symbols.shape[1]
    sym = symbols.detach().cpu().to(torch.int64)
    value = sym - offsets.view(1, c, 1, 1)
    max_value = (lengths - 2).view(1, c, 1, 1).expand_as(value)
    low = value < 0
    high = value >= max_value
    escape = low | high
    raw = torch.where(low, -2 * value - 1, torch.where(high, 2 * (value - max_value), 0))
    index = torch.where(escape, max_value, value)
    rows = cdf.unsqueeze(0).expand(sym.shape[0], -1, -1)  # (B, C, L)
    flat = index.flatten(2)
    freq = rows.gather(2, flat + 1) - rows.gather(2, flat)
    p = freq.to(torch.float64).view_as(value) / precision
    p = torch.where(escape, p * torch.pow(2.0, -_escape_bits(raw).to(torch.float64)), p)
    return p.to(symbols.device, torch.float32)
