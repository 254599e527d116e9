"""``tcae`` and ``inclined-tcae``: causal trimmed masks, the wavefront, bit-exact coding.

Everything is tiny (2-channel blocks, grids of a few dozen symbols): the raster ``tcae``
decodes symbol by symbol. Networks get random non-zero output weights (a fresh network
predicts the uniform distribution exactly, which would hide most bugs) and ``fit_end()``,
so coding goes through the context network and the wavefront.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from codec_lab.corelib.streams import Stream, StreamSpec
from codec_lab.corelib.testing import setup_coder
from codec_lab.errors import BitstreamError, ConfigError
from codec_lab.plugins.coders.common import wavefront_pool
from codec_lab.plugins.coders.common.categorical import PRECISION, frequencies
from codec_lab.plugins.coders.common.trimmed import ORDERS, ContextNetwork, trimmed_mask
from codec_lab.plugins.coders.common.wavefront import Step, Wavefront, schedule, step_count
from codec_lab.plugins.coders.tcae import InclinedTcaeCoder, TcaeCoder

CODERS = {"raster": TcaeCoder, "inclined": InclinedTcaeCoder}
SMALL = {"width": 2, "map_width": 4, "kernel": 3, "out_kernel": 3, "res_blocks": 1}
GRIDS = [(3, 4, 5), (1, 5, 3), (4, 2, 6)]
EDGE_GRIDS = [(1, 1, 1), (2, 1, 4), (3, 3, 1)]  # a single symbol, a single row, a single column
# The raster coder decodes one symbol per step: keep its grids near 50 symbols.
CODE_SHAPES = {"raster": [(2, 5, 5), (1, 4, 7)], "inclined": [(3, 5, 6), (1, 7, 4)]}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randomize(net: ContextNetwork, gen: torch.Generator) -> None:
    """Random non-zero output weights (a fresh output layer is all zeros: uniform logits)."""
    with torch.no_grad():
        net.out.weight.copy_(torch.randn(net.out.weight.shape, generator=gen))
        net.out.bias.copy_(torch.randn(net.out.bias.shape, generator=gen) * 0.5)


def _net(order: str, blocks: int, alphabet: int = 5, kernel: int = 5, out_kernel: int = 3,
         res_blocks: int = 1, condition: int = 0, seed: int = 0) -> ContextNetwork:  # fmt: skip
    torch.manual_seed(seed)
    sizes = {"width": 2, "kernel": kernel, "out_kernel": out_kernel, "res_blocks": res_blocks}
    net = ContextNetwork(blocks, alphabet, **sizes, order=order, condition_channels=condition)  # type: ignore[arg-type]
    _randomize(net, _gen(seed + 1))
    return net.eval()


def _rank(order: str, c: int, h: int, w: int) -> torch.Tensor:
    """(C, H, W) coding-order key: the plane c + h + w, or the raster index."""
    t = torch.arange(c).view(-1, 1, 1)
    hh = torch.arange(h).view(1, -1, 1)
    ww = torch.arange(w).view(1, 1, -1)
    key = t + hh + ww if order == "inclined" else t * h * w + hh * w + ww
    return key.expand(c, h, w)


def _coder(order: str, specs: list[StreamSpec], seed: int = 0, fit: bool = True) -> TcaeCoder:
    torch.manual_seed(seed)
    coder = CODERS[order](**SMALL)
    setup_coder(coder, specs)
    if fit:
        gen = _gen(seed + 100)
        for net in coder.nets.values():
            _randomize(net, gen)
        coder.fit_end()
    return coder.eval()


def _masks(shape: tuple[int, int, int], gen: torch.Generator) -> dict[str, torch.Tensor | None]:
    c = shape[0]
    channels = torch.zeros(c, 1, 1, dtype=torch.bool)
    channels[: max(1, c // 2 + c % 2)] = True
    return {
        "none": None,
        "random": torch.rand(shape, generator=gen) < 0.6,
        "all-false": torch.zeros(shape, dtype=torch.bool),
        "channels": channels,
    }


def _check_decoded(dec: torch.Tensor, sym: torch.Tensor, mask: torch.Tensor | None) -> None:
    full = torch.ones_like(sym, dtype=torch.bool) if mask is None else mask.expand_as(sym)
    assert dec.dtype == torch.int64 and dec.shape == sym.shape
    assert torch.equal(dec[full], sym[full]), "not bit-exact"
    assert not dec[~full].any(), "masked positions must decode to 0"


# ---------------------------------------------------------------------------- masks
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: "x".join(map(str, g)))
@pytest.mark.parametrize("kernel", [3, 5])
def test_every_logit_depends_only_on_earlier_symbols(
    order: str, grid: tuple[int, int, int], kernel: int
) -> None:
    c, h, w = grid
    net = _net(order, c, kernel=kernel, out_kernel=3 if kernel == 5 else 5, condition=1)
    n = c * h * w
    base = torch.rand(1, c, h, w, generator=_gen(1))
    cond = torch.rand(1, 1, h, w, generator=_gen(2)).expand(n, 1, h, w)
    x = base.repeat(n, 1, 1, 1)
    x.view(n, n)[torch.arange(n), torch.arange(n)] += 0.5  # image j perturbs (raster) position j
    with torch.no_grad():
        ref = net(base, cond[:1])
        out = net(x, cond)
    assert ref.abs().amax() > 0.1, "the logits must not be constant"
    diff = (out - ref).abs().amax(dim=2).view(n, n)  # [j, position]: largest logit change
    rank = _rank(order, c, h, w).reshape(n)
    changed_later = 0
    for j in range(n):
        earlier = rank <= rank[j]  # j itself and (inclined) its whole plane included
        assert float(diff[j][earlier].max()) <= 1e-5, (
            f"{order}: the input at {np.unravel_index(j, (c, h, w))} changes the logits of a position "
            f"at or before it in coding order"
        )
        if bool((~earlier).any()) and float(diff[j][~earlier].max()) > 1e-3:
            changed_later += 1
    assert changed_later > 0, "no input changes any later logit: the test would pass trivially"


@pytest.mark.parametrize("order", ORDERS)
def test_trimmed_mask_first_layer_strict_hidden_inclusive(order: str) -> None:
    blocks, g, k, r = 3, 2, 5, 2
    first = trimmed_mask(order, blocks, 1, g, k, strict=True)  # type: ignore[arg-type]
    hidden = trimmed_mask(order, blocks, g, g, k, strict=False)  # type: ignore[arg-type]
    assert first.shape == (blocks * g, blocks, k, k)
    assert hidden.shape == (blocks * g, blocks * g, k, k)
    for m in (first, hidden):
        assert set(m.unique().tolist()) <= {0.0, 1.0}
    for o in range(blocks * g):
        t = o // g
        assert first[o, t, r, r] == 0, "the first layer must not see the symbol itself"
        assert torch.all(hidden[o, t * g : (t + 1) * g, r, r] == 1), "hidden layers read their own position"
        # a later block is never read at its own position, an earlier one always is
        for m, gi in ((first, 1), (hidden, g)):
            if t + 1 < blocks:
                assert torch.all(m[o, (t + 1) * gi :, r, r] == 0)
            if t > 0:
                assert torch.all(m[o, : t * gi, r, r] == 1)
        # the next position in the same block (one column right) is never read
        assert first[o, t, r, r + 1] == 0 and torch.all(hidden[o, t * g : (t + 1) * g, r, r + 1] == 0)
        # the previous one (one column left) always is
        assert first[o, t, r, r - 1] == 1
    if order == "inclined":  # (dh, dw) = (+1, -1) lies on the symbol's own plane
        assert first[0, 0, r + 1, r - 1] == 0 and hidden[0, 0, r + 1, r - 1] == 1
    else:  # the whole row above is earlier in raster order, the row below later
        assert torch.all(first[0, 0, r - 1] == 1) and torch.all(first[0, 0, r + 1] == 0)
    with pytest.raises(ValueError, match="coding order"):
        trimmed_mask("zigzag", 2, 1, 1, 3, True)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- wavefront
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("grid", GRIDS + EDGE_GRIDS, ids=lambda g: "x".join(map(str, g)))
@pytest.mark.parametrize("net_size", [(5, 3, 1), (3, 5, 0), (3, 3, 2)], ids=["k5o3r1", "k3o5r0", "k3o3r2"])
def test_wavefront_equals_the_full_pass(order: str, grid: tuple[int, int, int],
                                        net_size: tuple[int, int, int]) -> None:  # fmt: skip
    c, h, w = grid
    kernel, out_kernel, res = net_size
    k = 5
    net = _net(
        order, c, alphabet=k, kernel=kernel, out_kernel=out_kernel, res_blocks=res, condition=2, seed=3
    )
    x = torch.rand(1, c, h, w, generator=_gen(4))
    x[torch.rand(x.shape, generator=_gen(5)) < 0.3] = 0  # "masked" inputs, as the coder writes them
    cond = torch.rand(1, 2, h, w, generator=_gen(6))
    with torch.no_grad():
        full = net(x, cond)[0]  # (C, K, H, W)
        wave = Wavefront(net, h, w, cond)
        got = torch.full_like(full, float("nan"))
        visits = torch.zeros(c, h, w, dtype=torch.int64)
        steps = 0
        for step in schedule(order, c, h, w):  # type: ignore[arg-type]
            logits, valid, t, hh, ww = _step(wave, step)
            assert logits.shape == (*valid.shape, k) and t.numel() == int(valid.sum()) > 0
            if order == "inclined":
                assert torch.all(t + hh + ww == steps), "a step is not one plane"
            visits[t, hh, ww] += 1
            got[t, :, hh, ww] = logits[valid]
            values = torch.zeros(valid.shape)
            values[valid] = x[0, t, hh, ww]  # the inputs become known only after their logits
            wave.write_values(step, values.numpy())
            steps += 1
    assert steps == step_count(order, c, h, w)  # type: ignore[arg-type]
    assert steps == (c + h + w - 2 if order == "inclined" else c * h * w)
    assert torch.all(visits == 1), "every position must be visited exactly once"
    assert torch.allclose(got, full, atol=1e-5), float((got - full).abs().max())


def _step(wave: Wavefront, step: Step) -> tuple[torch.Tensor, ...]:
    """A step's logits (T_a, rows, K), validity (T_a, rows) and valid cells' t, h, w, as tensors."""
    valid, t, h, w = wave.cells(step)
    return tuple(torch.from_numpy(a) for a in (wave.step_logits(step), valid, t, h, w))


def _wavefront_logits(
    net: ContextNetwork, order: str, x: torch.Tensor, cond: torch.Tensor | None, threads: int = 1
) -> torch.Tensor:
    """(C, K, H, W) logits of ``net`` computed step by step, inputs written as they become known."""
    c, h, w = x.shape[1:]
    got = torch.full((c, net.alphabet, h, w), float("nan"))
    with torch.no_grad():
        wave = Wavefront(net, h, w, cond, threads)
        for step in schedule(order, c, h, w):  # type: ignore[arg-type]
            logits, valid, t, hh, ww = _step(wave, step)
            got[t, :, hh, ww] = logits[valid]
            values = torch.zeros(valid.shape)
            values[valid] = x[0, t, hh, ww]
            wave.write_values(step, values.numpy())
    return got


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("grid", [(2, 13, 15), (1, 21, 20), (1, 41, 40)], ids=lambda g: "x".join(map(str, g)))
def test_wavefront_on_large_grids_and_wide_layers(order: str, grid: tuple[int, int, int]) -> None:
    """Up to 40 rows per block and step: every call of the kernel (32 rows, then 16, 4 or 1 for
    the rest; 17 rows left at the image's bottom: a 32-row call reaching 15 rows past them, as
    far as its spare rows allow) and layers wider than its 8 outputs per call (12 per block,
    19 logits: several chunks, the last padded)."""
    c, h, w = grid
    torch.manual_seed(12)
    net = ContextNetwork(c, 19, width=12, kernel=5, out_kernel=3, res_blocks=1, order=order,  # type: ignore[arg-type]
                         condition_channels=1).eval()  # fmt: skip
    _randomize(net, _gen(13))
    x = torch.rand(1, c, h, w, generator=_gen(14))
    cond = torch.rand(1, 1, h, w, generator=_gen(15))
    with torch.no_grad():
        full = net(x, cond)[0]
    got = _wavefront_logits(net, order, x, cond)
    assert torch.allclose(got, full, atol=1e-4), float((got - full).abs().max())


def test_threads_compute_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shared among threads (numba's pool, blocks dealt round-robin, several chunks per layer,
    up to 20 rows per block), every logit is bit-identical to the one-thread kernel's; the pool
    really ran, and a second caller while it runs (another Python thread) gets the one-thread
    kernel, with the same bits."""
    c, h, w = 6, 20, 17
    torch.manual_seed(19)
    net = ContextNetwork(c, 19, width=12, kernel=5, out_kernel=3, res_blocks=1, order="inclined",
                         condition_channels=1).eval()  # fmt: skip
    _randomize(net, _gen(20))
    x = torch.rand(1, c, h, w, generator=_gen(21))
    cond = torch.rand(1, 1, h, w, generator=_gen(22))
    one = _wavefront_logits(net, "inclined", x, cond, threads=1)
    pooled = wavefront_pool.step_kernel_threads
    calls: list[int] = []

    def counted(*args):  # type: ignore[no-untyped-def]
        calls.append(args[-1])
        return pooled(*args)

    monkeypatch.setattr(wavefront_pool, "step_kernel_threads", counted)
    torch_threads = torch.get_num_threads()
    for threads in (2, 3, 7):
        calls.clear()
        got = _wavefront_logits(net, "inclined", x, cond, threads=threads)
        assert torch.equal(got.view(torch.int32), one.view(torch.int32)), threads
        assert calls and max(calls) == min(threads, c), "the pool was not used"
        # numba's OpenMP pool sets the process's OpenMP thread count: torch's must be restored
        assert torch.get_num_threads() == torch_threads
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda _: _wavefront_logits(net, "inclined", x, cond, threads=2), range(2)))
    for got in both:
        assert torch.equal(got.view(torch.int32), one.view(torch.int32))


FORK_SCRIPT = r"""
import os
import torch
from codec_lab.plugins.coders.common.trimmed import ContextNetwork
from codec_lab.plugins.coders.common.wavefront import Wavefront, schedule

torch.manual_seed(0)
net = ContextNetwork(6, 5, width=4, kernel=5, out_kernel=3, res_blocks=1, order="inclined").eval()
with torch.no_grad():
    net.out.weight.normal_()

def logits():
    torch.manual_seed(1)
    wave, out = Wavefront(net, 9, 8, None, threads=2), []
    for step in schedule("inclined", 6, 9, 8):
        out.append(torch.from_numpy(wave.step_logits(step)))
        valid = torch.from_numpy(wave.cells(step)[0])
        wave.write_values(step, (torch.rand(valid.shape) * valid).numpy())
    return out

before = logits()  # the thread pool now runs in this process
pid = os.fork()
if pid == 0:
    torch.set_num_threads(1)  # as DataLoader workers do: torch's own pool does not survive a fork
    same = all(torch.equal(a, b) for a, b in zip(before, logits()))
    os._exit(0 if same else 3)
print(os.waitpid(pid, 0)[1])
"""


def test_a_forked_child_computes_on_one_thread() -> None:
    """Numba terminates a child forked after its (GNU OpenMP) pool started if the child uses
    the pool again; the wavefront falls back to one thread there, with the same results."""
    env = {**os.environ, "CODEC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=240,
                          env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "0", proc.stdout + proc.stderr[-3000:]


def test_wavefront_follows_weight_changes() -> None:
    """The kernel's weight tables are kept with the network while its parameters stay the
    same; an in-place change (an optimizer step, ``load_state_dict``) is seen."""
    net = _net("inclined", 3, condition=1, seed=16)
    x = torch.rand(1, 3, 5, 4, generator=_gen(17))
    cond = torch.rand(1, 1, 5, 4, generator=_gen(18))
    first = _wavefront_logits(net, "inclined", x, cond)
    assert torch.equal(_wavefront_logits(net, "inclined", x, cond), first)
    with torch.no_grad():
        net.second.weight.mul_(2)
        net.out.bias.add_(1)
        full = net(x, cond)[0]
    again = _wavefront_logits(net, "inclined", x, cond)
    assert not torch.allclose(again, first)
    assert torch.allclose(again, full, atol=1e-5)


# ---------------------------------------------------------------------------- coding
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("alphabet", [2, 3, 8, 16])
def test_round_trip_is_bit_exact(order: str, alphabet: int) -> None:
    for i, shape in enumerate(CODE_SHAPES[order]):
        spec = StreamSpec("y", shape[0], alphabet)
        coder = _coder(order, [spec], seed=alphabet + i)
        assert coder.fitted
        gen = _gen(10 * alphabet + i)
        sym = torch.randint(0, alphabet, shape, generator=gen)
        for name, mask in _masks(shape, gen).items():
            data = coder.encode(Stream(spec, sym, mask))
            assert isinstance(data, bytes) and len(data) % 4 == 0
            dec = coder.decode(data, spec, shape, mask)
            _check_decoded(dec, sym, mask)
            if mask is not None:  # masked symbols are never read nor coded
                other = torch.randint(0, alphabet, shape, generator=gen)
                changed = torch.where(mask.expand(shape), sym, other)
                assert coder.encode(Stream(spec, changed, mask)) == data, name
            if name == "all-false":
                assert len(data) <= 4


@pytest.mark.parametrize("order", ORDERS)
def test_round_trip_on_degenerate_grids(order: str) -> None:
    for i, shape in enumerate(EDGE_GRIDS):
        spec = StreamSpec("y", shape[0], 4)
        coder = _coder(order, [spec], seed=60 + i)
        gen = _gen(61 + i)
        sym = torch.randint(0, 4, shape, generator=gen)
        for mask in _masks(shape, gen).values():
            data = coder.encode(Stream(spec, sym, mask))
            _check_decoded(coder.decode(data, spec, shape, mask), sym, mask)


@pytest.mark.parametrize("order", ORDERS)
def test_a_side_stream_at_a_lower_resolution_conditions_by_nearest_neighbour(order: str) -> None:
    specs = [StreamSpec("map", 1, 16, side=True), StreamSpec("y", 3, 8)]
    coder = _coder(order, specs, seed=65)
    gen = _gen(66)
    mp, y = torch.randint(0, 16, (1, 2, 3), generator=gen), torch.randint(0, 8, (3, 4, 6), generator=gen)
    data_map = coder.encode(Stream(specs[0], mp))
    data_y = coder.encode(Stream(specs[1], y), {"map": Stream(specs[0], mp)})
    map_dec = coder.decode(data_map, specs[0], (1, 2, 3), None)
    assert torch.equal(map_dec, mp)
    assert torch.equal(coder.decode(data_y, specs[1], (3, 4, 6), None, {"map": Stream(specs[0], map_dec)}), y)
    lk = coder.likelihoods(Stream(specs[1], y[None]), {"map": Stream(specs[0], mp[None])})
    assert lk.shape == (1, 3, 4, 6)
    bits = float(-torch.log2(lk.double()).sum())
    assert abs(8 * len(data_y) - bits) <= 0.01 * bits + 64


@pytest.mark.parametrize("order", ORDERS)
def test_two_streams_round_trip_with_the_map_as_context(order: str) -> None:
    c, h, w = (3, 4, 5) if order == "raster" else (4, 6, 5)
    specs = [StreamSpec("map", 1, 16, side=True), StreamSpec("y", c, 8)]
    coder = _coder(order, specs, seed=7)
    assert coder.nets["y"].condition is not None  # mask + the map
    gen = _gen(8)
    mp = torch.randint(0, 16, (1, h, w), generator=gen)
    y = torch.randint(0, 8, (c, h, w), generator=gen)
    ymask = torch.arange(c).view(c, 1, 1) < (mp * c // 16 + 1)  # importance-like: channels below the level
    data_map = coder.encode(Stream(specs[0], mp))
    data_y = coder.encode(Stream(specs[1], y, ymask), {"map": Stream(specs[0], mp)})
    map_dec = coder.decode(data_map, specs[0], (1, h, w), None)
    assert torch.equal(map_dec, mp)
    y_dec = coder.decode(data_y, specs[1], (c, h, w), ymask, {"map": Stream(specs[0], map_dec)})
    _check_decoded(y_dec, y, ymask)
    # a stream conditioned on the map cannot be coded without it
    with pytest.raises(ConfigError, match="map"):
        coder.encode(Stream(specs[1], y, ymask))
    # the context is used: another map changes the model, so the same bytes decode differently
    other = (mp + 5) % 16
    try:
        wrong = coder.decode(data_y, specs[1], (c, h, w), ymask, {"map": Stream(specs[0], other)})
    except BitstreamError:
        return
    assert not torch.equal(wrong, y_dec), "the y stream does not depend on the map"


@pytest.mark.parametrize("order", ORDERS)
def test_unfitted_coder_codes_uniformly(order: str) -> None:
    shape = CODE_SHAPES[order][0]
    spec = StreamSpec("y", shape[0], 3)
    coder = _coder(order, [spec], fit=False)
    assert not coder.fitted
    gen = _gen(11)
    sym = torch.randint(0, 3, shape, generator=gen)
    for mask in _masks(shape, gen).values():
        data = coder.encode(Stream(spec, sym, mask))
        _check_decoded(coder.decode(data, spec, shape, mask), sym, mask)
        n = int((torch.ones(shape, dtype=torch.bool) if mask is None else mask.expand(shape)).sum())
        assert abs(8 * len(data) - n * math.log2(3)) <= 64
    lk = coder.likelihoods(Stream(spec, sym[None]))
    p = frequencies(torch.zeros(3)).double() / 2**PRECISION
    assert torch.equal(lk[0], p[sym].float())
    coder.fit_begin()
    assert not coder.fitted
    coder.fit_end()
    assert coder.fitted


# ---------------------------------------------------------------------------- other process
DECODE_SCRIPT = r"""
import sys
import torch
threads = int(sys.argv[1])
torch.set_num_threads(threads)
from codec_lab.corelib.streams import Stream, StreamSpec
from codec_lab.corelib.testing import setup_coder
from codec_lab.plugins.coders.tcae import InclinedTcaeCoder, TcaeCoder

cases = torch.load(sys.argv[2], weights_only=False)
results = []
for case in cases:
    cls = {"tcae": TcaeCoder, "inclined-tcae": InclinedTcaeCoder}[case["name"]]
    coder = cls(**case["params"])
    specs = [StreamSpec(*s) for s in case["specs"]]
    setup_coder(coder, specs)
    coder.load_state_dict(torch.load(case["state"]))
    coder.eval()
    assert coder.fitted
    context, decoded = {}, []
    for spec, (data, shape, mask) in zip(specs, case["streams"]):
        out = coder.decode(data, spec, shape, mask, dict(context))
        context[spec.name] = Stream(spec, out, mask)
        decoded.append(out)
    results.append(decoded)
torch.save(results, sys.argv[3])
print(torch.get_num_threads())
"""


def test_files_decode_in_a_fresh_process_at_another_thread_count(tmp_path: Path) -> None:
    cases, expected = [], []
    for order, (c, h, w) in (("inclined", (4, 6, 5)), ("raster", (2, 4, 5))):
        specs = [StreamSpec("map", 1, 16, side=True), StreamSpec("y", c, 8)]
        coder = _coder(order, specs, seed=21)
        gen = _gen(22)
        mp = torch.randint(0, 16, (1, h, w), generator=gen)
        y = torch.randint(0, 8, (c, h, w), generator=gen)
        ymask = torch.rand(c, h, w, generator=gen) < 0.7
        data_map = coder.encode(Stream(specs[0], mp))
        data_y = coder.encode(Stream(specs[1], y, ymask), {"map": Stream(specs[0], mp)})
        state = tmp_path / f"{coder.name}.pt"
        torch.save(coder.state_dict(), state)
        cases.append({
            "name": coder.name, "params": SMALL, "state": str(state),
            "specs": [(s.name, s.channels, s.alphabet, s.side) for s in specs],
            "streams": [(data_map, (1, h, w), None), (data_y, (c, h, w), ymask)],
        })  # fmt: skip
        expected.append([mp, torch.where(ymask, y, 0)])
    torch.save(cases, tmp_path / "cases.pt")
    threads = torch.get_num_threads() + 1
    env = {**os.environ, "CODEC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("OMP_NUM_THREADS", None)
    args = [str(threads), str(tmp_path / "cases.pt"), str(tmp_path / "out.pt")]
    proc = subprocess.run(
        [sys.executable, "-c", DECODE_SCRIPT, *args], capture_output=True, text=True, timeout=240, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.strip().splitlines()[-1]) == threads  # and the coder restored the count
    results = torch.load(tmp_path / "out.pt")
    for got, want in zip(results, expected, strict=True):
        for g, e in zip(got, want, strict=True):
            assert torch.equal(g, e), "the other process decoded different symbols"


# ---------------------------------------------------------------------------- damaged data
def _damaged(data: bytes) -> dict[str, bytes]:
    mid = len(data) // 2
    return {
        "truncated": data[:-4],
        "empty": b"",
        "flip-first": bytes([data[0] ^ 0xFF]) + data[1:],
        "flip-middle": data[:mid] + bytes([data[mid] ^ 0x5A]) + data[mid + 1 :],
        "flip-last": data[:-1] + bytes([data[-1] ^ 0x81]),
        "garbage": bytes(np.random.default_rng(0).integers(1, 256, len(data), dtype=np.uint8)),
        "doubled": data + data,
    }


@pytest.mark.parametrize("order", ORDERS)
def test_damaged_data_fails_cleanly(order: str) -> None:
    c, h, w = CODE_SHAPES[order][0]
    specs = [StreamSpec("map", 1, 16, side=True), StreamSpec("y", c, 8)]
    coder = _coder(order, specs, seed=31)
    gen = _gen(32)
    mp = torch.randint(0, 16, (1, h, w), generator=gen)
    y = torch.randint(0, 8, (c, h, w), generator=gen)
    ymask = torch.rand(c, h, w, generator=gen) < 0.7
    ctx = {"map": Stream(specs[0], mp)}
    for spec, sym, mask, context in ((specs[0], mp, None, None), (specs[1], y, ymask, ctx)):
        shape = tuple(sym.shape)
        data = coder.encode(Stream(spec, sym, mask), context)
        assert len(data) >= 8
        for name, bad in _damaged(data).items():
            start = time.monotonic()
            try:
                dec = coder.decode(bad, spec, shape, mask, context)  # type: ignore[arg-type]
            except BitstreamError:
                continue
            finally:
                assert time.monotonic() - start < 20, f"{name}: decoding damaged data took too long"
            assert dec.dtype == torch.int64 and tuple(dec.shape) == shape, name
            assert int(dec.min()) >= 0 and int(dec.max()) < spec.alphabet, name  # type: ignore[operator]
            if mask is not None:
                assert not dec[~mask].any(), name
        for bad in (data[:-1], data[:-3], data + b"\x01"):  # not whole 32-bit words
            with pytest.raises(BitstreamError, match="multiple of 4"):
                coder.decode(bad, spec, shape, mask, context)  # type: ignore[arg-type]
        with pytest.raises(BitstreamError):  # a trailing zero word: constriction refuses it
            coder.decode(data + bytes(4), spec, shape, mask, context)  # type: ignore[arg-type]


@pytest.mark.parametrize("order", ORDERS)
def test_wrong_model_decodes_other_symbols_or_refuses(order: str) -> None:
    shape = CODE_SHAPES[order][0]
    spec = StreamSpec("y", shape[0], 8)
    coder, other = _coder(order, [spec], seed=41), _coder(order, [spec], seed=42)
    sym = torch.randint(0, 8, shape, generator=_gen(43))
    data = coder.encode(Stream(spec, sym))
    try:
        dec = other.decode(data, spec, shape, None)
    except BitstreamError:
        return
    assert dec.dtype == torch.int64 and dec.shape == sym.shape
    assert int(dec.min()) >= 0 and int(dec.max()) < 8
    assert not torch.equal(dec, sym), "a model with other weights decoded the same symbols"


# ---------------------------------------------------------------------------- composition, params
@pytest.mark.parametrize("cls", [TcaeCoder, InclinedTcaeCoder])
def test_composition_needs_a_finite_alphabet(cls: type[TcaeCoder]) -> None:
    reason = cls().check_composition({"quantizer": SimpleNamespace(alphabet_size=None)})  # type: ignore[dict-item]
    assert reason is not None and "finite alphabet" in reason
    assert cls().check_composition({"quantizer": SimpleNamespace(alphabet_size=16)}) is None  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "params",
    [
        {"kernel": 4},
        {"kernel": 0},
        {"kernel": -3},
        {"out_kernel": 2},
        {"width": 0},
        {"map_width": 0},
        {"res_blocks": -1},
    ],
    ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()),
)
@pytest.mark.parametrize("cls", [TcaeCoder, InclinedTcaeCoder])
def test_bad_params_are_config_errors(cls: type[TcaeCoder], params: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match=next(iter(params))):
        cls(**params)


@pytest.mark.parametrize("alphabet", [None, 1, 257])
def test_setup_refuses_alphabets_it_cannot_model(alphabet: int | None) -> None:
    with pytest.raises(ConfigError, match="alphabet"):
        setup_coder(InclinedTcaeCoder(**SMALL), [StreamSpec("y", 2, alphabet)])


# ---------------------------------------------------------------------------- likelihoods
def _coded_probabilities(coder: TcaeCoder, spec: StreamSpec, sym: torch.Tensor, mask: torch.Tensor,
                         context: dict[str, Stream] | None) -> torch.Tensor:  # fmt: skip
    """(C, H, W): the probability the encoder codes each sent symbol with (NaN where masked)."""
    with torch.no_grad():
        _, syms, probs = coder._run(spec, mask, context, torch.where(mask, sym, 0), None)
    p_sent = np.concatenate([pr[np.arange(len(s)), s] for s, pr in zip(syms, probs, strict=True)])
    # the same positions, in coding order (positions depend on the grid only)
    net = coder.nets[spec.name]
    wave = Wavefront(net, sym.shape[1], sym.shape[2])
    order: list[torch.Tensor] = []
    for step in schedule(coder.order, *sym.shape):
        t, h, w = (torch.from_numpy(a) for a in wave.cells(step)[1:])
        keep = mask[t, h, w]
        order.append(torch.stack([t[keep], h[keep], w[keep]], 1))
    where = torch.cat(order)
    out = torch.full(sym.shape, float("nan"), dtype=torch.float64)
    out[where[:, 0], where[:, 1], where[:, 2]] = torch.from_numpy(p_sent)
    return out


@pytest.mark.parametrize("order", ORDERS)
def test_likelihoods_are_the_coding_probabilities(order: str) -> None:
    c, h, w = (2, 5, 5) if order == "raster" else (4, 6, 5)
    specs = [StreamSpec("map", 1, 16, side=True), StreamSpec("y", c, 8)]
    coder = _coder(order, specs, seed=51)
    gen = _gen(52)
    mp = torch.randint(0, 16, (2, 1, h, w), generator=gen)
    y = torch.randint(0, 8, (2, c, h, w), generator=gen)
    ymask = torch.rand(2, c, h, w, generator=gen) < 0.7
    batch = Stream(specs[1], y, ymask)
    lk = coder.likelihoods(batch, {"map": Stream(specs[0], mp)})
    assert lk.shape == y.shape and lk.dtype == torch.float32
    assert torch.all(lk[~ymask] == 1), "likelihood must be exactly 1 at masked positions"
    assert torch.all(lk[ymask] > 0) and torch.all(lk[ymask] < 1)
    lk_map = coder.likelihoods(Stream(specs[0], mp))
    for i in range(2):  # each image of the batch: what its file costs, probability by probability
        ctx = {"map": Stream(specs[0], mp[i])}
        every = torch.ones_like(mp[i], dtype=torch.bool)
        cases = ((specs[0], mp[i], every, None, lk_map[i]), (specs[1], y[i], ymask[i], ctx, lk[i]))
        for spec, sym, mask, context, lki in cases:
            data = coder.encode(Stream(spec, sym, mask), context)
            bits = float(-torch.log2(lki[mask].double()).sum())
            assert abs(8 * len(data) - bits) <= 0.01 * bits + 64, (bits, 8 * len(data))
            coded = _coded_probabilities(coder, spec, sym, mask, context)
            assert not coded[mask].isnan().any()
            # the full pass and the wavefront agree to float rounding; so do their frequencies
            assert torch.allclose(lki[mask].double(), coded[mask], rtol=1e-4, atol=2.0**-PRECISION)


def test_a_damaged_size_is_refused_before_symbol_by_symbol_decoding(registry, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The fuzz campaign's one hang: a tcae file whose header claims an untiled 48 x 1M image.
    tcae bounds its streams (``max_stream_symbols``), so the default tile fits the bound and the
    damaged file is refused before any decoding; inclined-tcae has no such bound."""
    from codec_lab.corelib.container import pack, unpack
    from codec_lab.corelib.files import decode_bytes, encode_image
    from codec_lab.corelib.tiling import resolve_tile
    from codec_lab.registry.compose import build_codec
    from tests.conftest import tiny_config
    from tests.helpers import image_tensor

    assert TcaeCoder.max_stream_symbols == 2**15 and InclinedTcaeCoder.max_stream_symbols is None
    torch.manual_seed(0)
    codec = build_codec(tiny_config(registry, coder={"name": "tcae", **SMALL})["model"], registry).eval()
    f, channels = codec.encoder.downsampling_factor, max(s.channels for s in codec.specs)
    tile = resolve_tile(codec)
    assert channels * (tile // f) ** 2 <= 2**15 < channels * ((tile + 16) // f) ** 2
    data = encode_image(codec, image_tensor(48, 40, seed=1))
    assert decode_bytes(codec, data).shape == (1, 3, 48, 40)
    header, payloads = unpack(data)
    header.tile, header.image_size = 0, (48, 1_048_640)
    calls: list[int] = []
    monkeypatch.setattr(TcaeCoder, "decode", lambda *a, **k: calls.append(1))
    with pytest.raises(BitstreamError, match="more than coder 'tcae' ever writes"):
        decode_bytes(codec, pack(header, payloads))
    assert not calls
