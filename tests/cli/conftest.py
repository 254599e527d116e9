"""CLI fixtures: an in-process runner and a run folder built by ``codec build`` itself."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codec_lab.cli.app import app
from tests.helpers import TINY_SETS


def codec_command() -> list[str]:
    """The installed ``codec`` console script (what a user runs), or ``python -m codec_lab.cli.app``."""
    script = Path(sys.executable).parent / "codec"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "codec_lab.cli.app"]


def invoke(*args: str | Path, env: dict[str, str] | None = None):
    """Run ``codec ARGS`` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def assert_clean_failure(result, *, contains: str | None = None, code: int | None = None) -> str:
    """Non-zero exit, one ``Error:`` line (plus an optional ``  →`` hint line), no traceback."""
    err = result.stderr
    assert result.exit_code != 0, f"expected a failure, got 0; stdout: {result.stdout!r}"
    if code is not None:
        assert result.exit_code == code, err
    assert "Traceback" not in err and "Traceback" not in result.stdout, err
    assert "internal error" not in err, f"a user error reported as a bug: {err!r}"
    lines = err.rstrip("\n").splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("Error: ")]
    assert len(errors) == 1, f"expected one Error: line: {err!r}"
    tail = lines[errors[0] + 1 :]
    assert len(tail) <= 1 and all(t.startswith("  → ") for t in tail), f"not a one-line error: {err!r}"
    if contains is not None:
        assert contains in err, err
    return err


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory: pytest.TempPathFactory, data_dirs: dict[str, Path]) -> Path:
    """A run folder written by ``codec build --steps 5`` on tiny images."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("build", "--steps", "5", "--out", out, "--data", data_dirs["train"],
                    "--val", data_dirs["val"], *TINY_SETS)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (out.parent / "build-stdout.txt").write_text(result.stdout)
    (out.parent / "build-stderr.txt").write_text(result.stderr)
    return out
