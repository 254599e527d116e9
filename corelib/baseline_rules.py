"""Contract rules of baselines (classical codecs): real files that decode to the input's size,
deterministically, growing along the sweep.

Part of the contract checks of :mod:`codec_lab.corelib.testing`, which re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from codec_lab.corelib.contract_rules import (
    Rule,
    RuleSkipped,
    _Shared,
    require,
    run_rules,
)
from codec_lab.corelib.contracts import (
    Baseline,
)


def photo(h: int, w: int, index: int = 0) -> np.ndarray:
    """An (h, w, 3) uint8 crop of a real photo shipped with the package (a Kodak image)."""
    from PIL import Image

    from codec_lab.corelib.images import sample_images

    paths = sample_images("held-out")
    with Image.open(paths[index % len(paths)]) as im:
        arr = np.asarray(im.convert("RGB"))
    reps = (-(-h // arr.shape[0]), -(-w // arr.shape[1]), 1)
    return np.ascontiguousarray(np.tile(arr, reps)[:h, :w])


def _settings(b: Baseline) -> list[float]:
    """The sweep's settings, plus both ends of the range."""
    out = [float(s) for s in b.sweep]
    for s in (b.low, b.high):
        if float(s) not in out:
            out.append(float(s))
    return out


def baseline_rules(make: Callable[[], Baseline]) -> list[Rule]:
    """The baseline contract: bytes out, the input's size back, files grow along the sweep,
    decoding from the bytes alone, determinism."""

    def prepare() -> Baseline:
        b = make()
        why = b.unavailable()
        if why:
            raise RuleSkipped(f"unavailable here: {why}")
        return b

    ready = _Shared(prepare, "is available here")
    sizes = ((48, 64), (37, 53))

    def available() -> None:
        ready()

    def returns_bytes() -> None:
        rule = "encode returns bytes and leaves the image unchanged"
        b = ready()
        img = photo(*sizes[0])
        for s in _settings(b):
            kept = img.copy()
            data = b.encode(img, s)
            require(isinstance(data, bytes) and len(data) > 0, rule,
                    f"encode at setting {s:g} returned {type(data).__name__}"
                    f"{' (empty)' if isinstance(data, bytes) else ''}", "return the whole file's bytes")
            require(np.array_equal(img, kept), rule, "encode modified the image it was given")

    def decodes() -> None:
        rule = "decode returns (H, W, 3) uint8 of the input size"
        b = ready()
        for h, w in sizes:
            img = photo(h, w, 1)
            mid = float(b.sweep[len(b.sweep) // 2])
            out = b.decode(b.encode(img, mid))
            require(isinstance(out, np.ndarray), rule,
                    f"decode returned {type(out).__name__}, not a numpy array")
            require(out.dtype == np.uint8 and out.shape == (h, w, 3), rule,
                    f"decode returned {out.shape} {out.dtype} for a {h}×{w} image; "
                    f"expected ({h}, {w}, 3) uint8",
                    "return what a decoder of the file shows: the original size, 8-bit RGB")

    def from_bytes() -> None:
        b = ready()
        img = photo(*sizes[0])
        data = b.encode(img, float(b.sweep[0]))
        a1 = b.decode(data)
        a2 = make().decode(data)
        require(np.array_equal(np.asarray(a1), np.asarray(a2)), "decode reads the file, not memory",
                "a fresh instance decodes the same bytes to another image",
                "decode must use nothing but the bytes (no state kept from encode)")

    def grows() -> None:
        rule = "files grow along the sweep"
        b = ready()
        img = photo(96, 128, 1)
        prev: tuple[float, int] | None = None
        for s in (float(v) for v in b.sweep):
            n = len(b.encode(img, s))
            if prev is not None:
                require(n >= prev[1] * 0.98 - 16, rule,
                        f"setting {s:g} gave {n} bytes, the setting before it in the sweep ({prev[0]:g}) "
                        f"{prev[1]} bytes", "order `sweep` from the smallest files to the largest (and set "
                        "larger_is_smaller for a setting like a compression ratio)")
            prev = (s, n)

    def deterministic() -> None:
        rule = "deterministic"
        b = ready()
        img = photo(*sizes[0])
        s = float(b.sweep[len(b.sweep) // 2])
        d1, d2 = b.encode(img, s), b.encode(img, s)
        require(d1 == d2, rule, "encoding the same image twice gave different bytes",
                "seed any randomness, or use none")
        require(np.array_equal(b.decode(d1), b.decode(d1)), rule, "decoding the same bytes twice differs")

    return [Rule("is available here", available),
            Rule("encode returns bytes and leaves the image unchanged", returns_bytes),
            Rule("decode returns (H, W, 3) uint8 of the input size", decodes),
            Rule("decode reads the file, not memory", from_bytes),
            Rule("files grow along the sweep", grows),
            Rule("deterministic", deterministic)]  # fmt: skip


def check_baseline(baseline: Baseline | type[Baseline]) -> None:
    """Bytes out; the input's size back as uint8 RGB; files grow along ``sweep``; decoding from
    the bytes alone; deterministic. An unavailable baseline (``unavailable()``) is not checked."""
    cls = baseline if isinstance(baseline, type) else type(baseline)
    given = [] if isinstance(baseline, type) else [baseline]
    run_rules(baseline_rules(lambda: given.pop() if given else cls()))
