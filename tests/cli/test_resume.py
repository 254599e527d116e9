"""``codec build --resume``: a build killed (SIGKILL) at any point continues to the weights an
uninterrupted run reaches — during a step, during a checkpoint write, during the coder fit."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codec_lab.corelib.checkpoint import load_checkpoint
from codec_lab.corelib.runs import run_state
from tests.cli.conftest import assert_clean_failure, invoke
from tests.cli.test_tcae_cli import CODER_SETS
from tests.helpers import TINY_SETS

# The kill happens inside the build process itself, at a chosen call: a patched function
# counts its calls and sends SIGKILL to its own process on the chosen one (nothing is flushed,
# no handler runs: as `kill -9`).
KILLER = textwrap.dedent('''
    import io, os, signal, sys
    point, nth, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    calls = [0]

    def due():
        calls[0] += 1
        return calls[0] == nth

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    import torch
    if point == "step":  # after backward, before the weights change
        adam_step = torch.optim.Adam.step
        def step(self, *a, **k):
            if due():
                die()
            return adam_step(self, *a, **k)
        torch.optim.Adam.step = step
    elif point == "checkpoint-write":  # half the checkpoint's bytes on disk, not yet renamed
        save = torch.save
        def half_save(obj, f, *a, **k):
            if not due():
                return save(obj, f, *a, **k)
            buf = io.BytesIO()
            save(obj, buf, *a, **k)
            with open(f, "wb") as out:
                out.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                out.flush()
                os.fsync(out.fileno())
            die()
        torch.save = half_save
    elif point == "coder-fit":  # inside the trained coder's stage
        from codec_lab.plugins.coders.tcae import TcaeCoder
        fit_loss = TcaeCoder.fit_loss
        def patched(self, streams):
            if due():
                die()
            return fit_loss(self, streams)
        TcaeCoder.fit_loss = patched
    elif point == "count":  # inside a counted coder fit
        from codec_lab.plugins.coders.histogram import HistogramCoder
        observe = HistogramCoder.fit_observe
        def patched(self, streams):
            if due():
                die()
            return observe(self, streams)
        HistogramCoder.fit_observe = patched
    from codec_lab.cli.app import main
    sys.argv = ["codec", *args]
    main()
''')

# ADMM steps every 2 epochs of 3 steps: epoch-end and mid-epoch checkpoints fall inside an ADMM
# period, so its accumulators must be restored for the run to continue the same.
ADMM_SETS = [*TINY_SETS, "--set", "model.rate.every=2", "--set", "train.steps_per_epoch=3",
             "--set", "train.checkpoint_every=2", "--set", "train.seed=3"]  # fmt: skip


def _build(args: list[str], tmp_path: Path, point: str | None = None, nth: int = 0) -> int:
    env = {**os.environ, "CODEC_THREADS": "1"}  # same thread count: same arithmetic
    if point is None:
        cmd = [sys.executable, "-m", "codec_lab.cli", *args]
    else:
        script = tmp_path / "killer.py"
        script.write_text(KILLER)
        cmd = [sys.executable, str(script), point, str(nth), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if point is None:
        assert proc.returncode == 0, proc.stderr
    return proc.returncode


def _same_run(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "weights.safetensors")), load_file(str(b / "weights.safetensors"))
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"weights differ from the uninterrupted run's: {differ[:5]}"
    for log in ("train_log.csv", "coder_log.csv"):
        if (a / log).exists() or (b / log).exists():
            rows = [[{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader((d / log).open())]
                    for d in (a, b)]  # fmt: skip
            assert rows[0] == rows[1], log


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, data_dirs: dict[str, Path]) -> tuple[list[str], Path]:
    """An uninterrupted tcae build, and the arguments that made it (less --out)."""
    args = ["build", "--rate", "admm", "--coder", "tcae", "--steps", "12", "--data", str(data_dirs["train"]),
            "--val", str(data_dirs["val"]), *ADMM_SETS, *CODER_SETS]  # fmt: skip
    tmp = tmp_path_factory.mktemp("reference")
    _build([*args, "--out", str(tmp / "run")], tmp)
    return args, tmp / "run"


def test_killed_at_several_points_resumes_to_the_same_weights(reference, tmp_path: Path) -> None:
    args, ref = reference
    run = tmp_path / "run"
    # 1. during the 5th optimizer step (epoch 2, after a mid-epoch checkpoint at step 4)
    assert _build([*args, "--out", str(run)], tmp_path, "step", 5) == -9
    state = run_state(run)
    assert state.status == "interrupted" and state.detail == "at step 4 of 12"
    assert load_checkpoint(run / "checkpoint.pt")["rate"]["count"] == 4  # 4 steps into an ADMM period
    # every command names the unfinished build and the command that continues it
    failed = invoke("eval", "--model", run, "--data", args[args.index("--val") + 1])
    assert_clean_failure(failed, contains=f"codec build --resume {run}")
    # 2. resumed, then killed while writing its second checkpoint (half written, not renamed)
    assert _build(["build", "--resume", str(run)], tmp_path, "checkpoint-write", 2) == -9
    assert load_checkpoint(run / "checkpoint.pt")["loop"]["step"] == 6  # the last complete one
    # 3. resumed, then killed inside the coder's training stage (after its first checkpoint)
    assert _build(["build", "--resume", str(run)], tmp_path, "coder-fit", 4) == -9
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["stage"] == "fit" and ckpt["fit"]["step"] == 2  # coder stage: 4 steps, saved every 2
    # 4. resumed to the end: the uninterrupted run's weights and logs
    _build(["build", "--resume", str(run)], tmp_path)
    _same_run(run, ref)
    assert run_state(run).status == "complete"


def test_killed_in_a_counted_fit_resumes_to_the_same_weights(data_dirs, tmp_path: Path) -> None:
    args = ["build", "--rate", "admm", "--steps", "6", "--data", str(data_dirs["train"]),
            "--val", str(data_dirs["val"]), *ADMM_SETS]  # fmt: skip
    _build([*args, "--out", str(tmp_path / "ref")], tmp_path)
    run = tmp_path / "run"
    assert _build([*args, "--out", str(run)], tmp_path, "count", 2) == -9
    assert run_state(run).detail == "while fitting the entropy coder"
    # the same command again offers the resume; without a terminal it says how
    again = invoke(*args, "--out", run)
    assert_clean_failure(again, contains=f"codec build --resume {run}")
    _build(["build", "--resume", str(run)], tmp_path)
    _same_run(run, tmp_path / "ref")


def test_resume_refuses_what_it_cannot_continue(trained_run: Path, tmp_path: Path) -> None:
    assert_clean_failure(invoke("build", "--resume", trained_run), contains="nothing to resume")
    assert_clean_failure(invoke("build", "--resume", tmp_path), contains="holds no build to resume")
    assert_clean_failure(invoke("build", "--resume", trained_run, "--rate", "admm"),
                         contains="--rate cannot change it")  # fmt: skip
