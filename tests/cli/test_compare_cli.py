"""``codec compare`` from the command line: the plan, and clean refusals."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import assert_clean_failure, invoke


def test_dry_run_prints_the_plan_and_does_nothing(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    r = invoke("compare", "--rate", "admm", "--rate", "importance", "--coder", "cabac", "--baseline", "webp",
               "--reference", "cwic", "--preset", "cpu", "--steps", "300", "--out", out, "--dry-run")
    assert r.exit_code == 0, r.stderr
    text = " ".join(r.stdout.split())
    for word in ("admm-keep=0.05", "importance-threshold=0.7", "fit-coder cabac", "webp", "jpeg"):
        assert word in text, word
    assert "estimated" in text and "min" in text
    assert "jpeg' added: it is the BD anchor" in text
    assert not out.exists()


def test_refusals_are_one_clear_line(tmp_path: Path) -> None:
    assert_clean_failure(invoke("compare", "--rate", "admn", "--dry-run"), contains="did you mean 'admm'")
    assert_clean_failure(invoke("compare", "--baseline", "jpeg", "--method", "cubic"), contains="pchip")
    assert_clean_failure(invoke("compare", "--rate", "admm", "--sweep", "admm:keep", "--dry-run"),
                         contains="RATE:KEY=V1,V2")
    assert_clean_failure(invoke("compare", "--dry-run"), contains="nothing to compare")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "photo.png").write_bytes(b"x")
    err = assert_clean_failure(invoke("compare", "--baseline", "jpeg", "--out", busy),
                               contains="did not write")
    assert "photo.png" in err and (busy / "photo.png").read_bytes() == b"x"
