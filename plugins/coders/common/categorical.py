"""Per-symbol categorical models: network logits → integer frequencies → rANS (constriction).

One canonical quantizer turns logits into integer frequencies that sum to exactly
``2**PRECISION`` with every symbol at least 1, so any symbol stays codable. The coder is fed
the exact dyadic probabilities ``freq / 2**PRECISION`` through constriction's
``Categorical(perfect=False)`` family (always passed explicitly: ``perfect`` changes the
bitstream). Encoder and decoder must hand this module bit-identical logits; the integer step
does not repair a float difference, it only makes the model exactly reproducible from them.
"""

from __future__ import annotations

import constriction
import numpy as np
import torch

from codec_lab.errors import BitstreamError

__all__ = ["PRECISION", "AnsReader", "encode_symbols", "frequencies", "probabilities", "quantize_pmf"]

PRECISION = 20


def quantize_pmf(p: torch.Tensor, precision: int = PRECISION) -> torch.Tensor:
    """Integer frequencies (…, K), int64, each ≥ 1, summing to ``2**precision``, from float64
    probabilities ``p``: ``1 + floor(p · (2^P − K))``, the remainder to the most frequent
    symbol (the first on ties), so the result depends only on ``p``'s bits."""
    total = 1 << precision
    k = p.shape[-1]
    freq = 1 + torch.floor(p * (total - k)).to(torch.int64)
    rest = total - freq.sum(-1, keepdim=True)
    return freq.scatter_add(-1, freq.argmax(-1, keepdim=True), rest)


def frequencies(logits: torch.Tensor, precision: int = PRECISION) -> torch.Tensor:
    """:func:`quantize_pmf` of the float64 softmax of ``logits`` (…, K)."""
    return quantize_pmf(torch.softmax(logits.double(), dim=-1), precision)


def probabilities(freq: torch.Tensor, precision: int = PRECISION) -> np.ndarray:
    """The exact dyadic probabilities (N, K) float64 constriction codes with."""
    return freq.reshape(-1, freq.shape[-1]).numpy().astype(np.float64) / float(1 << precision)


def _family() -> constriction.stream.model.Categorical:
    return constriction.stream.model.Categorical(perfect=False)


def encode_symbols(symbols: np.ndarray, probs: np.ndarray) -> bytes:
    """rANS-code ``symbols`` (N,) with per-symbol ``probs`` (N, K), decodable in order."""
    coder = constriction.stream.stack.AnsCoder()
    if symbols.size:
        coder.encode_reverse(symbols.astype(np.int32), _family(), probs)
    return coder.get_compressed().astype("<u4").tobytes()


class AnsReader:
    """Decodes symbols in the order :func:`encode_symbols` took them, a chunk at a time."""

    def __init__(self, data: bytes, name: str) -> None:
        hint = "the file is damaged"
        if len(data) % 4:
            raise BitstreamError(f"stream {name!r} has a length not a multiple of 4 bytes", hint)
        self.name = name
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        try:
            self.coder = constriction.stream.stack.AnsCoder(words)
        except ValueError as e:  # constriction refuses malformed data (e.g. a trailing zero word)
            raise BitstreamError(f"stream {name!r} is not a valid ANS stream: {e}", hint) from e
        self.family = _family()

    def read(self, probs: np.ndarray) -> np.ndarray:
        """The next ``len(probs)`` symbols (int64)."""
        try:
            return self.coder.decode(self.family, probs).astype(np.int64)
        except ValueError as e:
            raise BitstreamError(f"stream {self.name!r} cannot be decoded: {e}", "the file is damaged") from e
