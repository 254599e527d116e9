"""codec-lab plugins: the ``l1-sparsity`` rate and the ``laplace-static`` entropy coder.

Installed, this package is found through its ``codec.plugins`` entry point; ad hoc,
``CODEC_PLUGINS=codec_l1_laplace`` does the same. It imports only codec-lab's public API
(``codec_lab``, ``codec_lab.contracts``, ``codec_lab.errors``), torch, numpy and constriction.
"""

from __future__ import annotations

from codec_l1_laplace.coder import LaplaceStaticCoder
from codec_l1_laplace.rate import L1SparsityRate
from codec_lab import hookimpl

__all__ = ["L1SparsityRate", "LaplaceStaticCoder"]
__version__ = "0.1.0"


@hookimpl
def codec_register_rates():
    return [L1SparsityRate]


@hookimpl
def codec_register_coders():
    return [LaplaceStaticCoder]
