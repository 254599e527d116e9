"""``tcae`` and ``inclined-tcae``: bit-exact coding, other processes, damaged data, likelihoods.

Everything is tiny (2-channel blocks, grids of a few dozen symbols): the raster ``tcae``
decodes symbol by symbol. Networks get random non-zero output weights (a fresh network
predicts the uniform distribution exactly, which would hide most bugs) and ``fit_end()``,
so coding goes through the context network and the wavefront.
"""

from __future__ import annotations

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
from codec_lab.plugins.coders.common.categorical import PRECISION, frequencies
from codec_lab.plugins.coders.common.trimmed import ORDERS
from codec_lab.plugins.coders.common.wavefront import Wavefront, schedule
from codec_lab.plugins.coders.tcae import InclinedTcaeCoder, TcaeCoder
from tests.plugins.coders.tcae_helpers import (
    CODE_SHAPES,
    EDGE_GRIDS,
    SMALL,
    check_decoded,
    generator,
    mask_cases,
    small_coder,
)


# ---------------------------------------------------------------------------- coding
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("alphabet", [2, 3, 8, 16])
def test_round_trip_is_bit_exact(order: str, alphabet: int) -> None:
    for i, shape in enumerate(CODE_SHAPES[order]):
        spec = StreamSpec("y", shape[0], alphabet)
        coder = small_coder(order, [spec], seed=alphabet + i)
        assert coder.fitted
        gen = generator(10 * alphabet + i)
        sym = torch.randint(0, alphabet, shape, generator=gen)
        for name, mask in mask_cases(shape, gen).items():
            data = coder.encode(Stream(spec, sym, mask))
            assert isinstance(data, bytes) and len(data) % 4 == 0
            dec = coder.decode(data, spec, shape, mask)
            check_decoded(dec, sym, mask)
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
        coder = small_coder(order, [spec], seed=60 + i)
        gen = generator(61 + i)
        sym = torch.randint(0, 4, shape, generator=gen)
        for mask in mask_cases(shape, gen).values():
            data = coder.encode(Stream(spec, sym, mask))
            check_decoded(coder.decode(data, spec, shape, mask), sym, mask)


@pytest.mark.parametrize("order", ORDERS)
def test_a_side_stream_at_a_lower_resolution_conditions_by_nearest_neighbour(order: str) -> None:
    specs = [StreamSpec("map", 1, 16, side=True), StreamSpec("y", 3, 8)]
    coder = small_coder(order, specs, seed=65)
    gen = generator(66)
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
    coder = small_coder(order, specs, seed=7)
    assert coder.nets["y"].condition is not None  # mask + the map
    gen = generator(8)
    mp = torch.randint(0, 16, (1, h, w), generator=gen)
    y = torch.randint(0, 8, (c, h, w), generator=gen)
    ymask = torch.arange(c).view(c, 1, 1) < (mp * c // 16 + 1)  # importance-like: channels below the level
    data_map = coder.encode(Stream(specs[0], mp))
    data_y = coder.encode(Stream(specs[1], y, ymask), {"map": Stream(specs[0], mp)})
    map_dec = coder.decode(data_map, specs[0], (1, h, w), None)
    assert torch.equal(map_dec, mp)
    y_dec = coder.decode(data_y, specs[1], (c, h, w), ymask, {"map": Stream(specs[0], map_dec)})
    check_decoded(y_dec, y, ymask)
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
    coder = small_coder(order, [spec], fit=False)
    assert not coder.fitted
    gen = generator(11)
    sym = torch.randint(0, 3, shape, generator=gen)
    for mask in mask_cases(shape, gen).values():
        data = coder.encode(Stream(spec, sym, mask))
        check_decoded(coder.decode(data, spec, shape, mask), sym, mask)
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
from tests.plugins.coders.tcae_helpers import (
    CODE_SHAPES,
    EDGE_GRIDS,
    CODERS,
    EDGE_GRIDS,
    SMALL,
    check_decoded,
    coding_rank,
    generator,
    mask_cases,
    randomize_output,
    small_coder,
    small_net,
)

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
        coder = small_coder(order, specs, seed=21)
        gen = generator(22)
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
    coder = small_coder(order, specs, seed=31)
    gen = generator(32)
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
    coder, other = small_coder(order, [spec], seed=41), small_coder(order, [spec], seed=42)
    sym = torch.randint(0, 8, shape, generator=generator(43))
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
    coder = small_coder(order, specs, seed=51)
    gen = generator(52)
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
