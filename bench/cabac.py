"""``cabac`` on structured codes: speed in bins per second, numba cold start, and coded size
against the empirical conditional entropy of its own contexts.

    python -m bench.cabac [--symbols 1000000] [--md out.md] [--skip-cold]

Codes (synthetic, no trained run needed):

* ``laplace`` — latent-like: Laplacian values around the middle symbol whose scale varies
  smoothly in space and per channel (busy and flat regions, dead channels), rounded and
  clipped to the alphabet (K = 31 is the stochastic quantizer's default ±15);
* ``smooth`` — a smoothed Gaussian field quantized uniformly over the whole alphabet (the
  research note's AR-field test: values follow their neighbours).

Measured:

* throughput of encode and decode in bins (binary decisions) per second, ~``--symbols``
  symbols per code, both state models (target ≥ 30 M bins/s decode);
* numba cold start: the first encode + decode in a fresh process, with the compiled-code
  cache removed and with it warm;
* size: the real bytes against (a) the *static two-pass* code length — the empirical
  conditional entropy of the bins under the very same contexts and binarization, what a
  coder that knew the image's statistics in advance would spend (side information not
  counted) — and (b) the adaptive model's own ideal bits (range-coder overhead), for both
  state models, cold and fitted initial states (fitted on other codes of the same kind), and
  the gap between ``likelihoods`` (the estimate training sees) and the real bytes.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench._common import machine, print_table
from codec_lab.corelib.streams import Stream, StreamSpec
from codec_lab.corelib.testing import setup_coder
from codec_lab.plugins.coders.cabac import CabacCoder
from codec_lab.plugins.coders.common import binary_coder as bc


# ---------------------------------------------------------------------------- codes
def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (C, H, W), reflect-padded, normalized to unit variance."""
    r = max(1, int(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype)
    x = x[:, None]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))[:, 0]
    return (x - x.mean()) / x.std()


def laplace_code(k: int, c: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Latent-like code: Laplacian around the middle, scale smooth in space, per channel."""
    g = torch.Generator().manual_seed(seed)
    log_scale = 0.8 * _blur(torch.randn(c, h, w, generator=g), 6.0)
    # channel scales belong to the "model": the same for every code of a kind, like a codec's
    chan = torch.linspace(-2.5, 0.8, c)[torch.randperm(c, generator=torch.Generator().manual_seed(c))]
    chan = chan.view(c, 1, 1)
    scale = torch.exp(log_scale + chan) * max(1.0, k / 16)
    u = torch.rand(c, h, w, generator=g) - 0.5
    y = -scale * torch.sign(u) * torch.log1p(-2 * u.abs())
    mid = (k - 1) / 2
    return torch.round(y + mid).clamp(0, k - 1).to(torch.int64)


def smooth_code(k: int, c: int, h: int, w: int, seed: int) -> torch.Tensor:
    """A smoothed Gaussian field quantized uniformly over the alphabet (±2.5σ)."""
    g = torch.Generator().manual_seed(seed)
    x = _blur(torch.randn(c, h, w, generator=g, dtype=torch.float64), 2.0)
    x = x + 0.15 * torch.randn(c, h, w, generator=g, dtype=torch.float64)
    return torch.floor((x / 5.0 + 0.5) * k).clamp(0, k - 1).to(torch.int64)


KINDS = {"laplace": laplace_code, "smooth": smooth_code}


# ---------------------------------------------------------------------------- measures
def _coder(spec: StreamSpec, **kw: object) -> CabacCoder:
    coder = CabacCoder(**kw)  # type: ignore[arg-type]
    setup_coder(coder, [spec])
    return coder.eval()


def _fit(coder: CabacCoder, spec: StreamSpec, codes: list[torch.Tensor]) -> None:
    coder.fit_begin()
    for code in codes:
        coder.fit_observe([Stream(spec, code[None])])
    coder.fit_end()


def static_bits(coder: CabacCoder, spec: StreamSpec, code: torch.Tensor) -> float:
    """Empirical conditional entropy of the bins under the coder's contexts (two-pass)."""
    counts = np.zeros((coder.layouts[spec.name].contexts, 2), dtype=np.int64)
    bc.count_bins(code.numpy(), np.ones(code.shape, dtype=bool), coder.layouts[spec.name], counts)
    n = counts.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(counts > 0, counts / np.maximum(n, 1), 1.0)
    return float(-(counts * np.log2(p)).sum())


def n_bins(coder: CabacCoder, spec: StreamSpec, code: torch.Tensor) -> int:
    counts = np.zeros((coder.layouts[spec.name].contexts, 2), dtype=np.int64)
    bc.count_bins(code.numpy(), np.ones(code.shape, dtype=bool), coder.layouts[spec.name], counts)
    return int(counts.sum())


def _best_time(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def speed_rows(symbols: int) -> list[list[object]]:
    rows: list[list[object]] = []
    for kind in KINDS:
        for k in (8, 31):
            c, side = 16, int(math.sqrt(symbols / 16))
            spec = StreamSpec("y", c, k)
            code = KINDS[kind](k, c, side, side, seed=1)
            for states in ("shift", "fsm"):
                coder = _coder(spec, states=states, init="cold")
                data = coder.encode(Stream(spec, code))
                assert torch.equal(coder.decode(data, spec, tuple(code.shape), None), code)
                bins = n_bins(coder, spec, code)
                te = _best_time(lambda: coder.encode(Stream(spec, code)))  # noqa: B023
                td = _best_time(lambda: coder.decode(data, spec, tuple(code.shape), None))  # noqa: B023
                rows.append([kind, k, states, f"{code.numel():,}", f"{bins / code.numel():.2f}",
                             f"{bins / te / 1e6:.1f}", f"{bins / td / 1e6:.1f}",
                             f"{code.numel() / td / 1e6:.1f}"])  # fmt: skip
    return rows


COLD_SCRIPT = """
import time, torch
t0 = time.perf_counter()
from codec_lab.corelib.streams import Stream, StreamSpec
from codec_lab.corelib.testing import setup_coder
from codec_lab.plugins.coders.cabac import CabacCoder
from codec_lab.plugins.coders.common import binary_coder
t1 = time.perf_counter()
spec = StreamSpec("y", 2, 15)
coder = CabacCoder(); setup_coder(coder, [spec])
code = torch.randint(0, 15, (2, 8, 8))
data = coder.encode(Stream(spec, code))
assert torch.equal(coder.decode(data, spec, (2, 8, 8), None), code)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def cold_rows() -> list[list[object]]:
    """First encode + decode in a fresh process, without and with numba's cache."""
    cache = Path(bc.__file__).parent / "__pycache__"
    rows: list[list[object]] = []
    env = {**os.environ, "CODEC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    for label, clear in (("no cache (compile)", True), ("warm cache", False)):
        if clear:
            for f in cache.glob("binary_coder.*.nb[ic]"):
                f.unlink()
        out = subprocess.run([sys.executable, "-c", COLD_SCRIPT], capture_output=True, text=True, env=env,
                             check=True, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
        imp, first = (float(v) for v in out.stdout.split())
        rows.append([label, f"{imp:.2f}", f"{first:.2f}"])
    return rows


CONFIGS: list[tuple[str, dict[str, object]]] = [
    ("shift 5, no warm-up, cold (LZMA)", {"states": "shift", "shift": 5, "warmup": False, "init": "cold"}),
    ("shift, cold", {"states": "shift", "init": "cold"}),
    ("shift, fitted", {"states": "shift", "init": "fitted"}),
    ("fsm, cold", {"states": "fsm", "init": "cold"}),
    ("fsm, fitted", {"states": "fsm", "init": "fitted"}),
]


def size_rows(shape: tuple[int, int, int], configs=CONFIGS, kinds=tuple(KINDS), alphabets=(8, 31),
              train: int = 3) -> list[list[object]]:  # type: ignore[no-untyped-def]  # fmt: skip
    rows: list[list[object]] = []
    for kind in kinds:
        for k in alphabets:
            spec = StreamSpec("y", shape[0], k)
            code = KINDS[kind](k, *shape, seed=100)
            training = [KINDS[kind](k, *shape, seed=200 + i) for i in range(train)]
            for label, kw in configs:
                coder = _coder(spec, **kw)
                _fit(coder, spec, training)
                real = 8 * len(coder.encode(Stream(spec, code)))
                adapt = coder._adaptation()
                ideal = bc.model_bits(code.numpy(), np.ones(code.shape, bool), coder.layouts["y"], adapt,
                                      coder._initial("y", adapt))  # fmt: skip
                ref = static_bits(coder, spec, code)
                est = float(-torch.log2(coder.likelihoods(Stream(spec, code[None])).double()).sum())
                rows.append([kind, k, label, f"{real / code.numel():.4f}", f"{ref / code.numel():.4f}",
                             f"{100 * (real / ref - 1):+.2f}", f"{100 * (real / ideal - 1):+.3f}",
                             f"{100 * (est / real - 1):+.1f}"])  # fmt: skip
    return rows


SIZE_COLUMNS = ["code", "K", "coder", "bits/sym", "static 2-pass bits/sym", "vs static %",
                "coder overhead %", "estimate vs real %"]  # fmt: skip


def _table(title: str, columns: list[str], rows: list[list[object]]) -> str:
    """Print a table; its Markdown under a heading."""
    return f"### {title}\n\n{print_table(title, columns, rows)}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1_000_000, help="symbols per code for the speed table")
    parser.add_argument("--md", type=Path, help="also write the tables as Markdown")
    parser.add_argument("--skip-cold", action="store_true", help="do not measure the numba cold start")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    md = [f"# cabac bench\n\n{machine()}\n"]
    cold = [] if args.skip_cold else cold_rows()
    if cold:
        md.append(_table("numba cold start: fresh process, s",
                              ["numba cache", "import", "first encode + decode"], cold))  # fmt: skip
    md.append(_table("speed (16 channels, cold init)",
                          ["code", "K", "states", "symbols", "bins/sym", "encode Mbins/s", "decode Mbins/s",
                           "decode Msym/s"], speed_rows(args.symbols)))  # fmt: skip
    md.append(_table("size: a 16×256×256 code (1M symbols), fitted on 3 others",
                          SIZE_COLUMNS, size_rows((16, 256, 256))))  # fmt: skip
    md.append(_table("size: a Kodak-sized latent, 32×48×64 (98k symbols), fitted on 3 others",
                          SIZE_COLUMNS, size_rows((32, 48, 64))))  # fmt: skip
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text("\n\n".join(md) + "\n")
    print(machine())


if __name__ == "__main__":
    main()
