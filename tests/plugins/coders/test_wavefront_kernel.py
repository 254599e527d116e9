"""The wavefront kernel's inner loops: whichever loop computes an output, its bits are the same.

The kernel gives a block's rows of a step to calls of 32, 16, 4 or 1 rows depending on how
many are left; files stay decodable only if every loop computes every output as the same
chain of FMAs. Here each loop runs on the same inputs, called from Python (compiled without
the SLP vectorizer, unlike the kernel's), and every row they share must match to the bit.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from codec_lab.corelib.errors import PluginWarning
from codec_lab.plugins.coders.common import wavefront_kernel as kernel
from codec_lab.plugins.coders.common import wavefront_pool

LOOPS = {32: kernel.rows32, 16: kernel.rows16, 4: kernel.rows4}


def _case(seed: int, taps: int, cin: int, cs: int) -> tuple[np.ndarray, ...]:
    """Random inputs (``cs`` floats per (tap, channel) column, rows consecutive), weights and
    runs of (tap, first channel, length), some joined across taps as the kernel's tables do."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(taps * cin * cs + 64).astype(np.float32)
    w = rng.standard_normal(taps * cin * kernel.OUT).astype(np.float32)
    toff = (np.arange(taps) * cin * cs).astype(np.int64)
    runs = [(0, 0, cin)]  # a whole tap
    for s in range(1, taps):
        lo = int(rng.integers(0, cin))
        runs.append((s, lo, int(rng.integers(1, cin - lo + 1))))
    runs.append((taps - 1, 0, 0))  # an empty run changes nothing
    table = np.array([len(runs), *[v for run in runs for v in run]], dtype=np.int64)
    bias = rng.standard_normal(kernel.OUT).astype(np.float32)
    return x, w, toff, table, bias


def _reference(x: np.ndarray, w: np.ndarray, toff: np.ndarray, runs: np.ndarray, bias: np.ndarray,
               rows: int, xo: int, cs: int, wseg: int) -> np.ndarray:  # fmt: skip
    """(8, rows) in float64: what every loop approximates."""
    acc = np.tile(bias.astype(np.float64)[:, None], (1, rows))
    for j in range(runs[0]):
        s, lo, n = runs[1 + 3 * j : 4 + 3 * j]
        for c in range(lo, lo + n):
            at = xo + toff[s] + c * cs
            weights = w[s * wseg + c * kernel.OUT : s * wseg + (c + 1) * kernel.OUT]
            acc += weights[:, None].astype(np.float64) * x[at : at + rows]
    return acc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_loop_computes_the_same_bits(seed: int) -> None:
    taps, cin, cs = 9, 21, 40
    x, w, toff, runs, bias = _case(seed, taps, cin, cs)
    wseg, xo = cin * kernel.OUT, 3
    results: dict[int, np.ndarray] = {}
    for rows, loop in LOOPS.items():
        acc = np.tile(bias[:, None], (1, rows)).astype(np.float32)
        loop(x, xo, cs, toff, w, 0, wseg, runs, 0, acc)
        results[rows] = acc
    for i in range(4):  # one row at a time
        acc1 = bias[:, None].copy()
        kernel.row1(x, xo + i, cs, toff, w, 0, wseg, runs, 0, acc1)
        assert np.array_equal(acc1[:, 0].view(np.int32), results[4][:, i].view(np.int32)), i
    for narrow, wide in ((4, 16), (16, 32)):
        assert np.array_equal(results[narrow].view(np.int32), results[wide][:, :narrow].view(np.int32)), wide
    # the second half of a 32-row call is a 16-row call 16 rows further on
    acc = np.tile(bias[:, None], (1, 16)).astype(np.float32)
    kernel.rows16(x, xo + 16, cs, toff, w, 0, wseg, runs, 0, acc)
    assert np.array_equal(acc.view(np.int32), results[32][:, 16:].view(np.int32))
    ref = _reference(x, w, toff, runs, bias, 32, xo, cs, wseg)
    assert np.allclose(results[32], ref, rtol=1e-5, atol=1e-4)


def test_the_calls_cover_every_row_count() -> None:
    """The thresholds give every count of rows left to the loop that costs least, and no call
    runs further past the last valid row than the buffers' spare rows."""
    assert kernel.MIN_ROWS4 == 2 and kernel.MIN_ROWS4 <= kernel.MIN_ROWS16 <= kernel.MIN_ROWS32
    widths = ((kernel.MIN_ROWS32, 32), (kernel.MIN_ROWS16, 16), (kernel.MIN_ROWS4, 4), (1, 1))
    for left in range(1, 70):
        span = next(width for low, width in widths if left >= low)
        assert span - min(span, left) <= kernel.SPARE_ROWS, left


class _Kernel:
    """Stands in for the numba kernel: records calls, and its cache index lives at ``index``."""

    def __init__(self, index: Path) -> None:
        self._cache = SimpleNamespace(_cache_file=SimpleNamespace(_index_path=str(index)))
        self.calls = 0

    def __call__(self, *args: object) -> None:
        self.calls += 1


def test_a_first_compile_is_announced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The first use on a machine compiles for ~25 s: the user is told, once, and only then."""
    cold = _Kernel(tmp_path / "absent.nbi")
    monkeypatch.setattr(wavefront_pool, "_compiled", False)
    monkeypatch.setattr(wavefront_pool, "step_kernel", cold)
    with pytest.warns(PluginWarning, match="once"):
        wavefront_pool.compile_kernel()
    assert cold.calls == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wavefront_pool.compile_kernel()  # once per process
        (tmp_path / "present.nbi").touch()
        monkeypatch.setattr(wavefront_pool, "_compiled", False)
        monkeypatch.setattr(wavefront_pool, "step_kernel", _Kernel(tmp_path / "present.nbi"))
        wavefront_pool.compile_kernel()  # in the cache: nothing to say
    assert cold.calls == 1
    monkeypatch.undo()
    wavefront_pool.compile_kernel()
    assert wavefront_pool._in_cache(kernel.step_kernel), "numba's cache index is not where we look"
