"""``codec build --nproc N``: start the build under ``torchrun`` (PyTorch's own launcher).

The command checks what it can first (config, data folders, the run folder), so that a
mistake is one line here rather than N failing workers, then runs
``python -m torch.distributed.run --standalone --nproc-per-node N -m codec_lab.cli build …``
with the same options and an explicit ``--out``. Several machines: run torchrun yourself with
a rendezvous (docs/distributed.md); nothing here is needed for that.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from codec_lab.cli import _state
from codec_lab.cli._output import err

__all__ = ["launch", "torchrun_command"]


def torchrun_command(nproc: int, build_args: list[str]) -> list[str]:
    """The torchrun command line that runs ``codec build <build_args>`` on ``nproc`` processes."""
    root = ["--threads", str(_state.threads)] if _state.threads is not None else []
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "codec_lab.cli", *root, "build", *build_args]  # fmt: skip


def launch(nproc: int, build_args: list[str], out: Path) -> int:
    """Run the distributed build; torchrun's exit code (0: every process finished)."""
    cmd = torchrun_command(nproc, build_args)
    env = dict(os.environ)
    # torchrun would set 1 thread per process and warn about it; share the cores instead.
    if "OMP_NUM_THREADS" not in env:
        per = _state.threads or max(1, (os.cpu_count() or 1) // nproc)
        env["OMP_NUM_THREADS"] = str(per)
    err.print(f"Starting {nproc} training processes with torchrun (rank 0 reports):", highlight=False)
    err.print("  " + shlex.join(["torchrun", *cmd[3:]]), highlight=False, soft_wrap=True)
    rc = subprocess.run(cmd, env=env, check=False).returncode
    if rc != 0:
        err.print(f"Error: the distributed build stopped (torchrun exit {rc}); the messages above "
                  "say why", highlight=False)  # fmt: skip
        if (out / "checkpoint.pt").exists() and not (out / "weights.safetensors").exists():
            err.print(f"  → continue it with `codec build --resume {shlex.quote(str(out))} "
                      f"--nproc {nproc}`", highlight=False)  # fmt: skip
    return rc
