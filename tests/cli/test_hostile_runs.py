"""Run folders that were edited or damaged are refused before anything is allocated, and a
normal CLI run prints no library warnings."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from codec_lab.corelib.errors import RunError
from codec_lab.registry.runs import load_run
from tests.cli.conftest import assert_clean_failure, invoke
from tests.helpers import write_image


def _edited(run: Path, tmp_path: Path, edit) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    edit(cfg)
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return copy


def test_a_huge_config_is_refused_before_allocation(trained_run: Path, tmp_path: Path) -> None:
    # 16384 channels would need gigabytes; the config is checked against the weights' header
    run = _edited(trained_run, tmp_path, lambda c: c["model"]["encoder"].update(channels=16384))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(RunError, match=r"config.yaml does not fit weights.safetensors: encoder\.\S+ is "
                                       r"\d{4,}x.* by the config, \d+x.* in the weights"):  # fmt: skip
        load_run(run)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200 and time.perf_counter() - t0 < 30, (grown_mb, time.perf_counter() - t0)
    image = write_image(tmp_path / "a.png")
    result = invoke("compress", image, "--model", run, "-o", tmp_path / "a.cdl")
    err = assert_clean_failure(result, contains="does not fit weights.safetensors")
    assert "restore its config.yaml" in err and not (tmp_path / "a.cdl").exists()


def test_damaged_weights_header_is_one_line(trained_run: Path, tmp_path: Path) -> None:
    run = _edited(trained_run, tmp_path, lambda c: None)
    data = (run / "weights.safetensors").read_bytes()
    (run / "weights.safetensors").write_bytes((2**62).to_bytes(8, "little") + data[8:])
    result = invoke("compress", write_image(tmp_path / "a.png"), "--model", run)
    assert_clean_failure(result, contains="weights.safetensors is damaged (its header length")


def test_a_normal_cli_run_prints_no_library_warnings(trained_run: Path, tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.png")
    for args in (["compress", str(image), "--model", str(trained_run), "-o", str(tmp_path / "a.cdl")],
                 ["decompress", str(tmp_path / "a.cdl"), "--model", str(trained_run)]):  # fmt: skip
        proc = subprocess.run([sys.executable, "-m", "codec_lab.cli", *args], cwd=tmp_path,
                              capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": ""},
                              timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "Warning" not in proc.stderr and "warn" not in proc.stderr, proc.stderr
