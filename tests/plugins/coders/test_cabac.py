"""cabac: the contract, bit-exact round trips on every alphabet and mask, the compiled engine
against a plain-Python reference, fresh-process decoding, damaged data, adaptivity, fitting."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codec_lab.corelib.errors import BitstreamError
from codec_lab.corelib.streams import Stream, StreamSpec
from codec_lab.corelib.testing import check_coder, setup_coder
from codec_lab.plugins.coders.cabac import CabacCoder
from codec_lab.plugins.coders.common import binary_coder as bc
from codec_lab.plugins.coders.common import binary_reference as ref
from codec_lab.plugins.coders.common.binarization import Binarization, ContextLayout, neighbour_classes
from codec_lab.registry.compose import build_codec
from tests.conftest import tiny_config
from tests.helpers import image_tensor

ROOT = Path(__file__).resolve().parents[3]


def _coder(spec: StreamSpec, **kw: object) -> CabacCoder:
    coder = CabacCoder(**kw)  # type: ignore[arg-type]
    setup_coder(coder, [spec])
    return coder.eval()


def _smooth(k: int, shape: tuple[int, int, int], seed: int, blur: int = 5) -> torch.Tensor:
    """A spatially correlated code: a blurred random field quantized over the alphabet."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)[:, None]
    kernel = torch.ones(1, 1, blur, blur) / blur**2
    x = F.conv2d(F.pad(x, (blur // 2,) * 4, mode="replicate"), kernel)[:, 0]
    x = (x - x.mean()) / (x.std() + 1e-9)
    return torch.floor((x / 4 + 0.5) * k).clamp(0, k - 1).to(torch.int64)


def _fit(coder: CabacCoder, spec: StreamSpec, codes: list[torch.Tensor]) -> None:
    coder.fit_begin()
    for code in codes:
        coder.fit_observe([Stream(spec, code[None])])
    coder.fit_end()


# ---------------------------------------------------------------------------- contract
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"init": "cold"},
        {"states": "fsm"},
        {"states": "fsm", "init": "cold"},
        {"previous_channel": True},
        {"per_channel": True, "warmup": False, "shift": 4},
        {"buckets": 4, "bucket_width": 0, "unary_max": 2},
    ],
    ids=["shift-fitted", "shift-cold", "fsm-fitted", "fsm-cold", "prev-channel", "per-channel", "uniform"],
)
def test_contract(params: dict[str, object]) -> None:
    check_coder(lambda: CabacCoder(**params))  # type: ignore[arg-type]


def test_refuses_an_unbounded_alphabet() -> None:
    class Unbounded:
        alphabet_size = None

    msg = CabacCoder().check_composition({"quantizer": Unbounded()})  # type: ignore[dict-item]
    assert msg and "--quantizer stochastic or multilevel" in msg


def test_extra_state_info_records_the_binarization() -> None:
    coder = CabacCoder()
    setup_coder(coder, [StreamSpec("map", 1, 3, side=True), StreamSpec("y", 2, 31)])
    info = json.loads(json.dumps(coder.extra_state_info()))
    assert info["streams"]["map"]["binarization"].startswith("unary")
    assert info["streams"]["y"]["binarization"].startswith("tree")


def test_out_of_alphabet_symbols_are_refused() -> None:
    spec = StreamSpec("y", 1, 4)
    with pytest.raises(ValueError, match="outside its alphabet"):
        _coder(spec).encode(Stream(spec, torch.full((1, 2, 2), 4)))


# ---------------------------------------------------------------------------- round trips
def _masks(shape: tuple[int, int, int], gen: torch.Generator) -> list[torch.Tensor | None]:
    channel = torch.zeros(shape[0], 1, 1, dtype=torch.bool)
    channel[::2] = True
    return [None, torch.rand(shape, generator=gen) < 0.6, torch.zeros(shape, dtype=torch.bool), channel]


def test_round_trip_every_alphabet_and_mask() -> None:
    gen = torch.Generator().manual_seed(0)
    shape = (3, 5, 6)
    for k in range(2, 65):
        spec = StreamSpec("y", shape[0], k)
        params = [{"states": "shift", "init": "cold"}, {"states": "fsm", "previous_channel": True}][k % 2]
        coder = _coder(spec, **params)
        if k % 3 == 0:  # fitted states on some alphabets
            _fit(coder, spec, [_smooth(k, shape, seed=k)])
        codes = [torch.randint(0, k, shape, generator=gen), _smooth(k, shape, seed=100 + k)]
        for sym in codes:
            for mask in _masks(shape, gen):
                data = coder.encode(Stream(spec, sym, mask))
                dec = coder.decode(data, spec, shape, mask)
                full = torch.ones(shape, dtype=torch.bool) if mask is None else mask.expand(shape)
                assert dec.dtype == torch.int64 and dec.shape == shape
                assert torch.equal(dec[full], sym[full]), (k, params)
                assert not dec[~full].any()


def test_round_trip_large_alphabets_and_one_symbol() -> None:
    gen = torch.Generator().manual_seed(1)
    for k in (1, 100, 255, 256):
        spec = StreamSpec("y", 2, k)
        sym = torch.randint(0, k, (2, 7, 5), generator=gen)
        for states in ("shift", "fsm"):
            coder = _coder(spec, states=states)
            data = coder.encode(Stream(spec, sym))
            assert torch.equal(coder.decode(data, spec, (2, 7, 5), None), sym)
            if k == 1:
                assert data == b""


def test_an_all_masked_or_empty_grid_costs_nothing() -> None:
    spec = StreamSpec("y", 2, 9)
    coder = _coder(spec)
    sym = torch.randint(0, 9, (2, 4, 4))
    none = torch.zeros(2, 4, 4, dtype=torch.bool)
    assert coder.encode(Stream(spec, sym, none)) == b""
    assert coder.encode(Stream(spec, torch.zeros(2, 0, 3, dtype=torch.int64))) == b""
    assert coder.decode(b"", spec, (2, 0, 3), None).shape == (2, 0, 3)


# ---------------------------------------------------------------------------- engine
def test_fsm_tables_follow_the_design_formula() -> None:
    p_lps, nxt = bc.derive_fsm_tables()
    assert bc.FSM_P_LPS.tolist() == p_lps
    assert bc.FSM_NEXT_LPS.tolist() == nxt
    assert p_lps[0] == 1 << (bc.PROB_BITS - 1)  # state 0 is p = ½


@pytest.mark.parametrize("states", ["shift", "fsm"])
@pytest.mark.parametrize("warmup", [True, False])
def test_compiled_engine_equals_the_reference(states: str, warmup: bool) -> None:
    """A few hundred bins: identical bytes from the numba kernel and the plain-Python coder,
    and the reference decoder reads the bins back."""
    rng = np.random.default_rng(3)
    for k, shape in ((3, (2, 6, 7)), (13, (2, 8, 9)), (40, (1, 9, 11))):
        layout = ContextLayout(Binarization.choose(k, 4), 5, 2, True, False, shape[0])
        adapt = bc.Adaptation(states, 4, warmup)  # type: ignore[arg-type]
        sym = rng.integers(0, k, shape)
        mask = rng.random(shape) < 0.8
        counts = rng.integers(0, 40, (layout.contexts, 2))
        for init in (adapt.initial(None, layout.contexts), adapt.initial(counts, layout.contexts)):
            bins = ref.reference_bins(sym, mask, layout)
            assert len(bins) > 100
            ref_init = (init[0].tolist(), init[1].tolist())
            data = bc.encode(sym, mask, layout, adapt, init)
            assert data == ref.reference_encode(bins, adapt, ref_init)
            assert ref.reference_decode(data, [c for c, _ in bins], adapt, ref_init) == [b for _, b in bins]
            # the kernel's bin counts are the reference's
            got = np.zeros((layout.contexts, 2), dtype=np.int64)
            bc.count_bins(sym, mask, layout, got)
            want = np.zeros_like(got)
            for ctx, bit in bins:
                want[ctx, bit] += 1
            assert np.array_equal(got, want)


def test_binarizations_are_prefix_codes() -> None:
    for k in (2, 3, 4, 5, 7, 8, 9, 31, 64, 100, 256):
        for kind in ("unary", "tree"):
            if kind == "unary" and k > 16:
                continue
            b = Binarization(kind, k)  # type: ignore[arg-type]
            root, node, child = b.decision_tree
            for v in range(k):
                t, path = root, []
                for n, bit in b.bins(v):
                    assert t >= 0 and node[t] == n
                    path.append(bit)
                    t = child[t, bit]
                assert t == -(v + 1)
                assert len(path) <= b.depth and all(0 <= n < b.nodes for n, _ in b.bins(v))


def test_neighbour_classes() -> None:
    assert neighbour_classes(3, 5, 2).tolist() == [1, 2, 3]
    assert neighbour_classes(8, 4, 0).tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    centred = neighbour_classes(31, 5, 2)  # the window 10..19 in pairs, the tails clamped
    assert centred[9:21].tolist() == [1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]
    assert centred[0] == 1 and centred[30] == 5
    odd = neighbour_classes(31, 5, 1)
    assert odd[13:18].tolist() == [1, 2, 3, 4, 5]
    assert (odd == 6 - odd[::-1]).all()  # an odd width is symmetric about the middle symbol


def test_torch_contexts_equal_the_kernels() -> None:
    """The likelihood estimate sees the same contexts as the coder."""
    rng = np.random.default_rng(5)
    for prev, per_channel in ((False, False), (True, True)):
        layout = ContextLayout(Binarization.choose(11, 4), 5, 2, prev, per_channel, 3)
        sym = rng.integers(0, 11, (3, 6, 7))
        mask = rng.random(sym.shape) < 0.7
        combos = layout.combo_ids(torch.from_numpy(sym)[None], torch.from_numpy(mask)[None])[0]
        first = iter(ref.reference_bins(sym, mask, layout))
        for c, i, j in zip(*np.nonzero(mask), strict=True):
            ctx, _ = next(first)
            assert ctx == combos[c, i, j] * layout.binarization.nodes  # the root node is 0
            for _ in layout.binarization.bins(int(sym[c, i, j]))[1:]:
                next(first)


# ---------------------------------------------------------------------------- files
DECODE_SCRIPT = """
import sys, torch
from codec_lab.corelib.streams import StreamSpec
from codec_lab.corelib.testing import setup_coder
from codec_lab.plugins.coders.cabac import CabacCoder
saved = torch.load(sys.argv[1])
spec = StreamSpec("y", 3, 21)
coder = CabacCoder(states=saved["states"])
setup_coder(coder, [spec])
coder.load_state_dict(saved["state"])
out = coder.eval().decode(saved["data"], spec, (3, 12, 10), saved["mask"])
torch.save(out, sys.argv[2])
"""


@pytest.mark.parametrize("states", ["shift", "fsm"])
def test_a_file_decodes_in_a_fresh_process(tmp_path: Path, states: str) -> None:
    spec = StreamSpec("y", 3, 21)
    coder = _coder(spec, states=states)
    _fit(coder, spec, [_smooth(21, (3, 12, 10), seed=s) for s in range(2)])
    sym = _smooth(21, (3, 12, 10), seed=9)
    mask = torch.rand(3, 12, 10, generator=torch.Generator().manual_seed(2)) < 0.7
    data = coder.encode(Stream(spec, sym, mask))
    saved = {"states": states, "state": coder.state_dict(), "data": data, "mask": mask}
    torch.save(saved, tmp_path / "in.pt")
    subprocess.run([sys.executable, "-c", DECODE_SCRIPT, str(tmp_path / "in.pt"), str(tmp_path / "out.pt")],
                   check=True, cwd=ROOT, timeout=300)  # fmt: skip
    out = torch.load(tmp_path / "out.pt")
    assert torch.equal(out, torch.where(mask, sym, 0))


def test_damaged_data_decodes_to_some_symbols_quickly() -> None:
    """Truncated, flipped, empty and random bytes: symbols of the right shape and alphabet
    (the container's CRC reports them), or a BitstreamError — nothing else, never a hang."""
    gen = torch.Generator().manual_seed(4)
    shape = (4, 16, 16)
    rng = np.random.default_rng(0)
    for states in ("shift", "fsm"):
        for k in (2, 3, 31, 256):
            spec = StreamSpec("y", 4, k)
            coder = _coder(spec, states=states)
            sym = _smooth(k, shape, seed=k)
            mask = torch.rand(shape, generator=gen) < 0.9
            data = coder.encode(Stream(spec, sym, mask))
            flipped = bytearray(data)
            for i in rng.integers(0, max(1, len(data)), 3):
                if flipped:
                    flipped[i] ^= 0xA5
            damaged = [data[: len(data) // 2], data[:1], bytes(flipped), b"", rng.bytes(64), b"\xff" * 300,
                       data + rng.bytes(10)]  # fmt: skip
            for bad in damaged:
                t0 = time.perf_counter()
                try:
                    out = coder.decode(bad, spec, shape, mask)
                except BitstreamError:
                    continue
                assert time.perf_counter() - t0 < 5
                assert out.dtype == torch.int64 and out.shape == shape
                assert int(out.min()) >= 0 and int(out.max()) < k
                assert not out[~mask].any()


# ---------------------------------------------------------------------------- modelling
def test_adaptation_beats_a_static_histogram_on_correlated_codes() -> None:
    k, shape = 8, (4, 48, 48)
    spec = StreamSpec("y", shape[0], k)
    sym = _smooth(k, shape, seed=7, blur=9)
    freq = torch.bincount(sym.flatten(), minlength=k).double()
    p = freq / freq.sum()
    zeroth = float(-(freq[freq > 0] * torch.log2(p[freq > 0])).sum())
    for states in ("shift", "fsm"):
        bits = 8 * len(_coder(spec, states=states, init="cold").encode(Stream(spec, sym)))
        assert bits < 0.75 * zeroth, (states, bits, zeroth)  # measured: 0.59 (shift)


def test_likelihoods_estimate_the_real_bits() -> None:
    k, shape = 31, (8, 32, 32)
    spec = StreamSpec("y", shape[0], k)
    sym = _smooth(k, shape, seed=11)
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(0)) < 0.8
    for params in ({"init": "cold"}, {"init": "fitted"}, {"states": "fsm"}):
        coder = _coder(spec, **params)
        _fit(coder, spec, [_smooth(k, shape, seed=s) for s in range(3)])
        real = 8 * len(coder.encode(Stream(spec, sym, mask)))
        lk = coder.likelihoods(Stream(spec, sym[None], mask[None]))
        assert torch.all(lk[0][~mask] == 1)
        est = float(-torch.log2(lk.double()).sum())
        assert abs(est - real) <= CabacCoder.likelihood_tolerance * real, (params, est, real)


def test_fitting_sets_the_initial_states_only_when_fitted() -> None:
    k, shape = 15, (4, 16, 16)
    spec = StreamSpec("y", shape[0], k)
    sym = _smooth(k, shape, seed=1)
    training = [_smooth(k, shape, seed=s) for s in range(2, 6)]
    for init in ("cold", "fitted"):
        coder = _coder(spec, init=init)
        before = coder.encode(Stream(spec, sym))
        _fit(coder, spec, training)
        assert coder.fitted and int(coder.counts_y.sum()) > 0
        after = coder.encode(Stream(spec, sym))
        assert (after == before) == (init == "cold")
        if init == "fitted":
            assert len(after) < len(before)  # the fitted start saves the learning
        assert torch.equal(coder.decode(after, spec, shape, None), sym)
    # a fresh coder loaded with the fitted state decodes the same file
    fresh = _coder(spec)
    fresh.load_state_dict(coder.state_dict())
    assert torch.equal(fresh.decode(after, spec, shape, None), sym)


def test_fit_counts_only_sent_symbols() -> None:
    spec = StreamSpec("y", 1, 4)
    coder = _coder(spec)
    sym = torch.tensor([[[[0, 3], [1, 2]]]])
    mask = torch.tensor([[[[True, False], [False, False]]]])
    coder.fit_begin()
    coder.fit_observe([Stream(spec, sym, mask)])
    coder.fit_end()
    assert int(coder.counts_y.sum()) == 1  # symbol 0: one unary bin (a 0)


CW = {"name": "content-weighted", "width": 0.0625, "latent_channels": 4}


@pytest.mark.parametrize("parts", [{"rate": {"name": "admm", "cell": 32}},
                                   {"rate": {"name": "importance", "levels": 4}, "encoder": CW,
                                    "decoder": CW}], ids=["admm", "importance"])  # fmt: skip
def test_composes_into_a_codec(registry, parts: dict[str, dict[str, object]]) -> None:  # type: ignore[no-untyped-def]
    """Built by the registry (a side stream, masks): fitted, then a real image round-trips."""
    torch.manual_seed(0)
    cfg = tiny_config(registry, coder={"name": "cabac"}, **parts)
    codec = build_codec(cfg["model"], registry).eval()
    coder = codec.coder
    coder.fit_begin()
    for seed in range(2):
        coder.fit_observe(codec.streams(image_tensor(32, 40, seed=seed)))
    coder.fit_end()
    x = image_tensor(32, 48, seed=5)
    out = codec.decompress(**codec.compress(x))
    with torch.no_grad():
        ref = codec(x)
    assert torch.equal(out["x_hat"], ref["x_hat"].clamp(0, 1))
    assert all(torch.all(lk > 0) for lk in ref["likelihoods"].values())
