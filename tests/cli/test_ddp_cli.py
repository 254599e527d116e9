"""`codec build --nproc 2`: PyTorch DDP on gloo through torchrun, as a user runs it.

Tolerance: the per-step training loss of 2 processes equals one process's with the same global
batch within 0.1 % (measured: ~1e-7 relative on the deterministic importance codec; the
difference is the order of float sums in the gradient all-reduce).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file

BUILD = [sys.executable, "-m", "codec_lab.cli", "build", "--rate", "importance",
         "--set", "train.steps_per_epoch=1", "--set", "train.batch_size=4", "--set", "train.crop=48",
         "--set", "model.rate.stage1=0.2", "--set", "train.device=cpu"]  # fmt: skip
STEPS = 8


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "CODEC_DISABLE_PLUGIN_AUTOLOAD": "1"}


def _build(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*BUILD, *args], env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _losses(run: Path) -> list[float]:
    with open(run / "train_log.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "two"
    proc = _build("--steps", str(STEPS), "--nproc", "2", "--out", str(out))
    assert "Starting 2 training processes with torchrun" in proc.stderr
    assert proc.stderr.count("Training content-weighted") == 1  # rank 0 reports, alone
    return out


def test_two_processes_follow_the_single_process_loss_curve(ddp_run: Path, tmp_path: Path) -> None:
    single = tmp_path / "one"
    _build("--steps", str(STEPS), "--out", str(single))
    one, two = _losses(single), _losses(ddp_run)
    assert len(one) == len(two) == STEPS
    assert two == pytest.approx(one, rel=1e-3)
    assert len(set(one)) > 1  # a curve, not a constant
    # rank 0 wrote a complete, loadable run
    assert (ddp_run / "weights.safetensors").exists() and (ddp_run / "metrics.json").exists()
    assert not (ddp_run / ".checkpoint.pt.part").exists()


def test_resume_under_ddp_reaches_the_uninterrupted_weights(ddp_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    proc = subprocess.Popen([*BUILD, "--steps", str(STEPS), "--nproc", "2", "--out", str(out)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    log = out / "train_log.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.02)
    # The launcher, torchrun and both workers (torchrun starts them in sessions of their own).
    victims = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for v in victims:
        v.send_signal(signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(victims, timeout=30)
    assert not (out / "weights.safetensors").exists(), "the build finished before it was killed"
    resumed = subprocess.run([*BUILD[:4], "--resume", str(out), "--nproc", "2"], env=_env(),
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at step" in resumed.stderr
    a, b = load_file(ddp_run / "weights.safetensors"), load_file(out / "weights.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), k
    assert _losses(out) == _losses(ddp_run)


def test_batch_that_does_not_split_is_refused_before_launch(tmp_path: Path) -> None:
    out = tmp_path / "odd"
    proc = subprocess.run([*BUILD, "--steps", "2", "--set", "train.batch_size=3", "--nproc", "2",
                           "--out", str(out)], env=_env(), capture_output=True, text=True)  # fmt: skip
    assert proc.returncode != 0
    assert "train.batch_size 3 does not split over 2 processes" in proc.stderr
    assert "Traceback" not in proc.stderr and "torchrun" not in proc.stderr
    assert not out.exists()
