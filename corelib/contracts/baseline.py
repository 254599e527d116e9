"""The contract of a baseline: a classical codec (JPEG, WebP, …) measured beside ours.

A baseline is not a component of a composed codec (it is no torch module and has no
``KINDS`` entry): it codes a whole 8-bit RGB image to bytes and back. The project's runner
(``codec_lab.corelib.classical``) does everything else the same way for every baseline, so
their results compare with each other and with learned codecs:

* every image is written to a real file (``NAME<suffix>``) holding exactly the bytes
  :meth:`Baseline.encode` returned; ``bpp`` is always measured from those bytes
  (file size × 8 / pixels), never estimated;
* the reconstruction is :meth:`Baseline.decode` of the bytes read back from that file, and
  quality (PSNR, MS-SSIM, SSIM) is measured on it with the project's metrics;
* each result row records the image's setting under :attr:`Baseline.setting`'s key, and
  tables show that column.

Register a subclass with the ``codec_register_baselines`` hook (see
``codec_lab.registry.hookspecs``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from codec_lab.corelib.contracts.base import ReportColumn

__all__ = ["Baseline", "BaselineInfo"]


class Baseline(abc.ABC):
    """A classical codec: an 8-bit RGB image to bytes (a real file's content) and back.

    Subclasses are constructed without arguments (the registry does ``cls()``); keep any
    fixed encoder options as class attributes. Instances must be reusable for any number of
    images and hold no per-image state.

    Class attributes:
        name: registry key, lowercase kebab-case, unique among baselines (``jpeg``).
        summary: one line shown by ``codec plugins``.
        version: bumped whenever what the plugin does with the library changes (options,
            colour conversion), so that results from different versions can be told apart.
        setting: the report column of the knob a sweep varies — quality, or JPEG 2000's
            compression ratio — e.g. ``ReportColumn("quality", "quality", ".0f", "…")``.
            Each result row holds the setting used for that image under ``setting.key``.
        sweep: the default settings of an RD curve, from the smallest files to the largest,
            spanning roughly 0.1–2 bpp on Kodak-like photos.
        low, high: the range of the setting (``low < high``); the byte-budget search stays in
            it.
        larger_is_smaller: True when a larger setting gives a *smaller* file (a compression
            ratio). Such a setting is searched continuously (geometric bisection over
            ``[low, high]``); otherwise settings are integers (qualities) and searched as such.
        suffix: the coded files' suffix, with its dot (``.jpg``).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    version: ClassVar[str] = "0.1"
    setting: ClassVar[ReportColumn] = ReportColumn("quality", "quality", ".0f", "the encoder's quality")
    sweep: ClassVar[tuple[float, ...]] = ()
    low: ClassVar[float] = 0
    high: ClassVar[float] = 100
    larger_is_smaller: ClassVar[bool] = False
    suffix: ClassVar[str] = ""

    def unavailable(self) -> str | None:
        """Why this baseline cannot be used here, or None when it can.

        Check that the library (and the format inside it) is installed, without coding
        anything; say what to install, e.g. ``"this Pillow (10.4.0) cannot write AVIF:
        install Pillow >= 11.3"``. The registry refuses an unavailable baseline with this
        reason and ``codec plugins`` shows it. The default: always available.
        """
        return None

    @abc.abstractmethod
    def encode(self, image: np.ndarray, setting: float) -> bytes:
        """The complete file content coding ``image`` at ``setting``.

        Args:
            image: (H, W, 3) uint8 RGB, C-contiguous; do not modify it.
            setting: within ``[low, high]``; an integer value when the setting is a quality
                (``larger_is_smaller`` False), passed as a float.

        Returns:
            The bytes of a file a standalone decoder of the format reads (headers included):
            the runner writes exactly these bytes and measures bpp from their length, so
            everything the decoder needs must be in them — no side information.
        """

    @abc.abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """The image a decoder of the real file shows: (H, W, 3) uint8 RGB.

        ``data`` is the content of a file :meth:`encode` wrote, read back from disk. Return
        exactly what a decoder of that file would (8 bits, RGB, the original size), never
        something kept from encoding: quality is measured on this array.
        """

    @abc.abstractmethod
    def library(self) -> str:
        """The library doing the coding, with its version, e.g. ``"Pillow 13.0.0 JPEG"``.

        Recorded in every result's description, so that numbers can be reproduced.
        """

    def options(self) -> dict[str, Any]:
        """Fixed encoder options worth recording with results (JSON-able), e.g.
        ``{"subsampling": "4:2:0"}``. The default: none."""
        return {}


@dataclass(frozen=True)
class BaselineInfo:
    """A registered baseline as the registry and ``codec plugins`` see it
    (``Registry().baseline_info(name)``).

    Attributes:
        kind: always ``"baseline"``.
        name: the registry key (the class's ``name``).
        summary: one line (the class's ``summary``, or its docstring's first line).
        version: the class's ``version``.
        source: ``built-in``, ``dist==version`` or ``CODEC_PLUGINS``.
        cls: the baseline class; ``cls()`` constructs it.
    """

    kind: str
    name: str
    summary: str
    version: str
    source: str
    cls: type[Baseline]
