"""Bjøntegaard delta between two rate-quality curves: BD-rate (%) and BD-quality (e.g. BD-PSNR, dB).

The method of VCEG-M33 with piecewise interpolation instead of its cubic fit, as the JCT-VC/JVET CTC
sheets and the ``bjontegaard`` package compute it: BD-rate interpolates log10(rate) as a function of
quality for each curve and averages the difference over the qualities both curves reach; BD-quality
swaps the axes. Interpolation is scipy's ``PchipInterpolator`` ("pchip", the CTC's choice) or
``Akima1DInterpolator`` ("akima", found more accurate by Herglotz et al. 2022), integrated exactly.
Nothing is extrapolated: where the curves do not overlap, or a curve cannot be interpolated, the
result carries no number but a reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.interpolate import Akima1DInterpolator, PchipInterpolator

__all__ = ["METHODS", "MIN_POINTS", "BDResult", "Method", "bd_quality", "bd_rate", "msssim_db"]

Method = Literal["pchip", "akima"]
METHODS: tuple[str, ...] = ("pchip", "akima")
"""The interpolation methods :func:`bd_rate` and :func:`bd_quality` accept."""
MIN_POINTS = 4
"""Fewest distinct points a curve needs by default (VCEG-M33 and the CTC use 4)."""

_MINUS = "\u2212"  # a real minus sign in table cells, not a hyphen
_ZERO = 1e-12  # |Δ| below this is rounding noise of two equal integrals: reported as exactly 0
_INTERPOLATORS = {"pchip": PchipInterpolator, "akima": Akima1DInterpolator}


@dataclass(frozen=True)
class BDResult:
    """One Bjøntegaard delta of a test curve against an anchor curve.

    Attributes:
        value: BD-rate in percent (negative: the test needs fewer bits than the anchor for the same
            quality), or BD-quality in the metric's units (positive: the test is better at the same
            rate); None when no number can be given (see ``reason``).
        kind: "rate" (BD-rate) or "quality" (BD-quality, e.g. BD-PSNR).
        method: the interpolation, "pchip" or "akima".
        interval: the overlap integrated over: qualities (e.g. dB) for BD-rate, bpp for BD-quality;
            None when there is none or the curves were refused.
        reason: why ``value`` is None, e.g. "no overlap" or "anchor has 3 distinct points (at least
            4 needed)".
    """

    value: float | None
    kind: Literal["rate", "quality"]
    method: str
    interval: tuple[float, float] | None = None
    reason: str | None = None

    def text(self, unit: str = "dB") -> str:
        """A short table cell: "−12.3 %" (BD-rate), "+0.42 dB" (BD-quality in ``unit``), or the reason."""
        if self.value is None:
            return self.reason or "n/a"
        digits, suffix = (1, "%") if self.kind == "rate" else (2, unit)
        v = round(self.value, digits)
        if v == 0:  # no "−0.0" or "+0.0"
            return f"{0:.{digits}f} {suffix}"
        return f"{'+' if v > 0 else _MINUS}{abs(v):.{digits}f} {suffix}"

    def detail(self, unit: str = "dB") -> str:
        """Method and interval: "pchip over 27.10–31.45 dB" (BD-rate; ``unit``: the quality's) / "… bpp"."""
        if self.interval is None:
            return f"{self.method}: {self.reason}"
        lo, hi = self.interval
        if self.kind == "rate":
            return f"{self.method} over {lo:.2f}\u2013{hi:.2f} {unit}"
        return f"{self.method} over {lo:.3g}\u2013{hi:.3g} bpp"


def msssim_db(v: float) -> float:
    """MS-SSIM in dB, −10·log10(1 − v), the scale on which BD-quality of MS-SSIM is usually given.

    Returns inf for v = 1 (a lossless reconstruction); raises ValueError for v > 1 or NaN.
    """
    if not v <= 1:
        raise ValueError(f"MS-SSIM must be at most 1, got {v}")
    return math.inf if v == 1 else -10.0 * math.log10(1.0 - v)


def _curve(name: str, points: Sequence[tuple[float, float]], min_points: int) -> np.ndarray | str:
    """Distinct points sorted by rate, as rows (log10 bpp, quality); or the reason they are refused."""
    arr = np.asarray(points, dtype=float) if len(points) else np.empty((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must be a sequence of (bpp, quality) pairs, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        return f"{name} has a NaN or infinite value"
    if (arr[:, 0] <= 0).any():
        return f"{name} has a rate that is not positive"
    given = len(arr)
    arr = np.unique(arr, axis=0)  # sorts by rate, then quality, and drops exact duplicates
    if len(arr) < min_points:
        same = f" of {given} given (identical ones count once)" if given > len(arr) else ""
        return (f"{name} has {len(arr)} distinct point{'' if len(arr) == 1 else 's'}{same} "
                f"(at least {min_points} needed)")  # fmt: skip
    # Both axes strictly increasing: each is then a function of the other, so either can be interpolated.
    if (np.diff(arr[:, 0]) <= 0).any():
        return f"{name}: two points have the same rate"
    if (np.diff(arr[:, 1]) == 0).any():
        return f"{name}: two points have the same quality"
    if (np.diff(arr[:, 1]) < 0).any():
        i = int(np.argmax(np.diff(arr[:, 1]) < 0))  # name the first offending pair: it can be checked
        (b0, q0), (b1, q1) = arr[i], arr[i + 1]
        return (f"{name}: quality is not increasing with rate ({q1:.4g} at {b1:.3g} bpp < {q0:.4g} at "
                f"{b0:.3g} bpp)")
    arr[:, 0] = np.log10(arr[:, 0])
    return arr


def _delta(
    kind: Literal["rate", "quality"],
    anchor: Sequence[tuple[float, float]],
    test: Sequence[tuple[float, float]],
    method: str,
    min_points: int,
) -> BDResult:
    if method not in _INTERPOLATORS:
        raise ValueError(f"unknown BD interpolation method {method!r}; valid: {', '.join(METHODS)}")
    if min_points < 2:
        raise ValueError(f"min_points must be at least 2, got {min_points}")
    curves = []
    for name, points in (("anchor", anchor), ("test", test)):
        c = _curve(name, points, min_points)
        if isinstance(c, str):
            return BDResult(None, kind, method, None, c)
        curves.append(c)
    # BD-rate: x = quality, y = log10 rate; BD-quality: x = log10 rate, y = quality.
    xi, yi = (1, 0) if kind == "rate" else (0, 1)
    a, t = curves
    lo = max(a[0, xi], t[0, xi])
    hi = min(a[-1, xi], t[-1, xi])
    if not hi > lo:  # never extrapolate; a single shared point is no interval either
        return BDResult(None, kind, method, None, "no overlap")
    interp = _INTERPOLATORS[method]
    # Exact integrals of the piecewise cubics; the same interval for both, so equal curves cancel.
    area_a = float(interp(a[:, xi], a[:, yi]).integrate(lo, hi))
    area_t = float(interp(t[:, xi], t[:, yi]).integrate(lo, hi))
    delta = (area_t - area_a) / (hi - lo)
    if abs(delta) < _ZERO:
        delta = 0.0
    if kind == "rate":
        return BDResult((10.0**delta - 1.0) * 100.0, kind, method, (float(lo), float(hi)))
    return BDResult(delta, kind, method, (float(10.0**lo), float(10.0**hi)))


def bd_rate(
    anchor: Sequence[tuple[float, float]],
    test: Sequence[tuple[float, float]],
    method: Method = "pchip",
    min_points: int = MIN_POINTS,
) -> BDResult:
    """BD-rate of ``test`` against ``anchor``: the average rate difference at equal quality, in percent.

    Each curve's log10(bpp) is interpolated as a function of quality (``method``: "pchip" or
    "akima"), both are integrated exactly over the overlap [max of the minima, min of the maxima]
    of their qualities, and the mean difference Δ gives (10^Δ − 1)·100 %. Negative: fewer bits.

    Args:
        anchor: (bpp, quality) points of the reference, in any order; exact duplicates are dropped.
        test: (bpp, quality) points of the codec compared.
        method: the interpolation.
        min_points: fewest distinct points each curve needs.

    Returns:
        The result; ``value`` is None, with a ``reason``, when the curves do not overlap, a curve has
        too few points, NaN or infinite values, or quality does not strictly increase with rate.

    Raises:
        ValueError: an unknown ``method``, ``min_points`` below 2, or points that are not pairs.
    """
    return _delta("rate", anchor, test, method, min_points)


def bd_quality(
    anchor: Sequence[tuple[float, float]],
    test: Sequence[tuple[float, float]],
    method: Method = "pchip",
    min_points: int = MIN_POINTS,
) -> BDResult:
    """BD-quality (BD-PSNR for PSNR) of ``test`` against ``anchor``: mean quality difference at equal rate.

    Each curve's quality is interpolated as a function of log10(bpp) (``method``: "pchip" or
    "akima"), both are integrated exactly over the overlap of their log-rates, and the value is the
    mean difference test − anchor in the quality's units. Arguments, refusals and errors are those
    of :func:`bd_rate`; ``interval`` is given in bpp.
    """
    return _delta("quality", anchor, test, method, min_points)
