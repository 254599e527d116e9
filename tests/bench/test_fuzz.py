"""``bench/fuzz.py``: a small CI budget of the decoder fuzzing, and proof the harness detects
each kind of failure (so the budget cannot pass vacuously)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from bench import fuzz
from bench._fuzz_mutate import KINDS, mutate
from codec_lab.corelib.container import unpack
from codec_lab.corelib.errors import BitstreamError
from codec_lab.corelib.files import encode_image
from codec_lab.registry.compose import build_codec
from tests.conftest import tiny_config
from tests.helpers import image_tensor

CI_CASES = 40
"""Cases per coder and mutation kind in CI (the full campaign runs 10,000: bench/RESULTS.md)."""


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())["results"]


def test_small_budget_of_every_coder_and_kind_fails_nothing(tmp_path: Path) -> None:
    out = tmp_path / "fuzz"
    args = ["--cases", str(CI_CASES), "--jobs", "2", "--timeout", "30", "--out", str(out), "--quiet"]
    status = fuzz.main(args)
    results = _summary(out)
    assert set(results) == set(fuzz.CODERS)
    for coder, per in results.items():
        assert set(per) == set(KINDS)
        for kind, r in per.items():
            assert r["cases"] == CI_CASES, (coder, kind, r)
            failed = {k: r[k] for k in fuzz.FAILURES if r[k]}
            assert not failed, f"{coder} {kind}: {failed}; see the cases in {out / 'failures'}"
            assert r["clean"] + r["identical"] == CI_CASES
        # Cases reach the decoders: stream payloads are refused there, not only by the container.
        reached = sum(n for per_kind in per.values() for msg, n in per_kind["top_errors"] if "stream" in msg)
        assert reached > 0, (coder, per)
    assert status == 0


def test_harness_detects_every_kind_of_failure(tmp_path: Path) -> None:
    """The fault model misbehaves once in each way per 8 cases: each is counted as what it is."""
    out = tmp_path / "faults"
    status = fuzz.main(["--inject-faults", "--cases", "8", "--jobs", "2", "--timeout", "4",
                        "--max-rss-mb", "1536", "--out", str(out), "--quiet"])  # fmt: skip
    r = _summary(out)[fuzz.FAULTS]["faults"]
    counts = {k: r[k] for k in fuzz.COLUMNS}
    assert counts == {"clean": 1, "identical": 1, "wrong": 1, "unexpected": 1, "crash": 2, "hang": 1,
                      "memory": 1}, r  # fmt: skip
    assert status == 1
    records = {p.stem: p.read_text() for p in (out / "failures").glob("*.txt")}
    assert len(records) == 6 and all((out / "failures" / f"{s}.cdl").exists() for s in records)
    crashes = [t for t in records.values() if t.startswith("outcome: crash")]
    assert len(crashes) == 2 and all("Fatal Python error" in t for t in crashes), crashes


def _files() -> list[bytes]:
    from codec_lab.registry.components import Registry

    torch.manual_seed(0)
    reg = Registry()
    codec = build_codec(tiny_config(reg)["model"], reg).eval()
    codec.coder.fit_begin()
    codec.coder.fit_observe(codec.streams(image_tensor(48, 48)))
    codec.coder.fit_end()
    return [encode_image(codec, image_tensor(h, w, seed=i)) for i, (h, w) in enumerate([(40, 48), (136, 72)])]


@pytest.mark.parametrize("kind", KINDS)
def test_mutations_are_reproducible_and_keep_the_checksum_where_asked(kind: str) -> None:
    files = _files()
    again = [mutate(kind, random.Random(f"7:{kind}:{i}"), files[i % 2], files) for i in range(200)]
    cases = [mutate(kind, random.Random(f"7:{kind}:{i}"), files[i % 2], files) for i in range(200)]
    assert cases == again
    assert len({data for data, _ in cases}) > 150  # mostly distinct
    refusals: Counter[str] = Counter()
    for data, _ in cases:
        try:
            unpack(data)
        except BitstreamError as e:
            refusals["".join(c for c in e.message if not c.isdigit())[:60]] += 1
    checksum = sum(n for msg, n in refusals.items() if "checksum" in msg)
    if kind == "plain":
        assert checksum > 150  # plain damage mostly stops at the trailing CRC
    else:
        assert checksum == 0
        assert len(refusals) >= 5, refusals  # many different header checks are reached
