"""Binarization of K-ary symbols and the context layout of a context-adaptive binary coder.

A symbol in ``[0, K)`` is coded as a short string of binary decisions ("bins"); each bin is
coded with the adaptive probability of its own *context*. Two binarizations:

* ``unary`` (truncated unary, small alphabets): ``s`` ones then a zero, the zero left out
  for ``s = K - 1``. Bin ``i`` asks "is ``s > i``?" and is node ``i``.
* ``tree`` (larger alphabets): the fixed-length binary code of ``s``, most significant bit
  first, depth ``ceil(log2 K)``. The prefix read so far is a node of a binary tree (heap
  numbering: root 1, children ``2n`` and ``2n + 1``) and every internal node is its own
  context, so the bins form an exact categorical model of ``s``. The tree is truncated to
  the K leaves: a bin whose 1-branch holds no symbol ``< K`` is not coded (it is 0).

The context of a bin is (node, class of the left neighbour, class of the upper neighbour
[, class of the co-located symbol of the previous channel]), neighbours taken in the same
channel, already coded in raster order. A neighbour outside the grid or masked (not sent)
is class 0, "absent". Values are put into ``buckets`` classes ``1..buckets`` so that the
contexts stay few enough to learn from one image:

* ``bucket_width = 0``: uniform buckets over the whole alphabet (``1 + v·buckets // K``);
* ``bucket_width = w ≥ 1``: a window of ``buckets`` buckets ``w`` values wide centred on
  the middle of the alphabet (to half a bucket: an even width over an odd alphabet cannot be
  symmetric), the tails clamped into the outer buckets. Latent codes pile up around the
  middle symbol (the quantizer's zero), where the detail matters.

Alphabets of at most ``buckets`` symbols use one class per value. Everything here is a
pure function of the configuration, so encoder and decoder derive the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Binarization", "ContextLayout", "MAX_ALPHABET", "neighbour_classes"]

MAX_ALPHABET = 256

Kind = Literal["unary", "tree"]


@dataclass(frozen=True)
class Binarization:
    """How symbols of an alphabet of ``alphabet`` values become bins."""

    kind: Kind
    alphabet: int

    @staticmethod
    def choose(alphabet: int, unary_max: int) -> Binarization:
        """Truncated unary up to ``unary_max`` symbols, the truncated binary tree above."""
        return Binarization("unary" if alphabet <= unary_max else "tree", alphabet)

    @property
    def depth(self) -> int:
        """The most bins a symbol takes."""
        if self.kind == "unary":
            return self.alphabet - 1
        return max(1, (self.alphabet - 1).bit_length())

    @property
    def nodes(self) -> int:
        """Context nodes per neighbour combination (unary: K − 1; tree: 2^depth − 1)."""
        return self.alphabet - 1 if self.kind == "unary" else (1 << self.depth) - 1

    def bins(self, value: int) -> list[tuple[int, int]]:
        """The (node, bit) pairs coding ``value``, in order (the reference definition)."""
        out: list[tuple[int, int]] = []
        if self.kind == "unary":
            for i in range(self.alphabet - 1):
                bit = int(value > i)
                out.append((i, bit))
                if not bit:
                    break
            return out
        node = 1
        for d in range(self.depth):
            shift = self.depth - 1 - d
            bit = (value >> shift) & 1
            if (((node - (1 << d)) << 1) | 1) << shift < self.alphabet:  # the 1-branch exists
                out.append((node - 1, bit))
            node = (node << 1) | bit
        return out

    @cached_property
    def paths(self) -> tuple[np.ndarray, np.ndarray]:
        """(K, depth) tables of each symbol's bin nodes and bits; node −1 where no bin."""
        node = np.full((self.alphabet, self.depth), -1, dtype=np.int64)
        bit = np.zeros((self.alphabet, self.depth), dtype=np.int64)
        for v in range(self.alphabet):
            for i, (n, b) in enumerate(self.bins(v)):
                node[v, i], bit[v, i] = n, b
        return node, bit

    @cached_property
    def decision_tree(self) -> tuple[int, np.ndarray, np.ndarray]:
        """The binarization as the decoder walks it: (root, node (T,), child (T, 2)).

        Internal node ``t`` codes a bin in context node ``node[t]`` and goes on to
        ``child[t, bit]``; a leaf (and ``root`` when no bin is needed, K = 1) is
        ``-(symbol + 1)``. Bins that are never coded (a truncated tree's forced 0) are
        already left out.
        """
        index: dict[int, int] = {}
        paths = [self.bins(v) for v in range(self.alphabet)]
        for path in paths:
            for n, _ in path:
                index.setdefault(n, len(index))
        node = np.zeros(max(1, len(index)), dtype=np.int64)
        child = np.zeros((max(1, len(index)), 2), dtype=np.int64)
        for n, t in index.items():
            node[t] = n
        for v, path in enumerate(paths):
            for i, (n, b) in enumerate(path):
                child[index[n], b] = index[path[i + 1][0]] if i + 1 < len(path) else -(v + 1)
        root = index[paths[0][0][0]] if paths[0] else -1
        return root, node, child

    def describe(self) -> str:
        return f"{self.kind} ({self.depth} bins at most, {self.nodes} nodes)"


def neighbour_classes(alphabet: int, buckets: int, width: int) -> np.ndarray:
    """(K,) int64 class ``1..`` of each value as a neighbour (0 is kept for "absent")."""
    v = np.arange(alphabet, dtype=np.int64)
    if alphabet <= buckets:
        return v + 1
    if width <= 0:
        return 1 + v * buckets // alphabet
    # Window of `buckets` buckets of `width` values, centred on (K - 1) / 2; in half-units so
    # an even alphabet (no middle symbol) splits evenly around its middle.
    offset = 2 * v - (alphabet - 1) + buckets * width  # 2·(v − start of the window)
    return 1 + np.clip(offset // (2 * width), 0, buckets - 1)


@dataclass(frozen=True)
class ContextLayout:
    """Where each bin's adaptive state lives: ``((channel·combos + combo)·nodes + node)``.

    Attributes:
        binarization: how the stream's symbols become bins.
        buckets: neighbour value classes (plus "absent").
        bucket_width: 0 for uniform buckets, else the width of the centred ones.
        previous_channel: also condition on the co-located symbol of the previous channel.
        per_channel: every channel has its own contexts (else channels share them).
        channels: the stream's channels.
    """

    binarization: Binarization
    buckets: int
    bucket_width: int
    previous_channel: bool
    per_channel: bool
    channels: int

    @cached_property
    def classes(self) -> np.ndarray:
        return neighbour_classes(self.binarization.alphabet, self.buckets, self.bucket_width)

    @property
    def n_classes(self) -> int:
        """Classes a neighbour takes, "absent" included."""
        return int(self.classes.max()) + 1

    @property
    def combos(self) -> int:
        """Neighbour-class combinations of one channel."""
        return self.n_classes ** (3 if self.previous_channel else 2)

    @property
    def contexts(self) -> int:
        return (self.channels if self.per_channel else 1) * self.combos * self.binarization.nodes

    def combo_ids(self, symbols: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) neighbour combination of every position (channel offset included),
        computed as the coder does: absent where outside the grid or masked."""
        k = self.binarization.alphabet
        table = torch.as_tensor(self.classes, device=symbols.device)
        cls = torch.where(mask, table[symbols.clamp(0, k - 1)], 0)
        n = self.n_classes
        left = F.pad(cls, (1, 0))[..., :, :-1]
        up = F.pad(cls, (0, 0, 1, 0))[..., :-1, :]
        combo = left * n + up
        if self.previous_channel:
            prev = F.pad(cls, (0, 0, 0, 0, 1, 0))[:, :-1]
            combo = combo * n + prev
        if self.per_channel:
            chan = torch.arange(cls.shape[1], device=cls.device).view(1, -1, 1, 1)
            combo = combo + chan * self.combos
        return combo

    def describe(self) -> dict[str, object]:
        return {
            "binarization": self.binarization.describe(),
            "neighbour_classes": self.classes.tolist(),
            "contexts": self.contexts,
        }
