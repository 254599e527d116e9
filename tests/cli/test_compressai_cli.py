"""``codec compressai``: registering a run for CompressAI's tools, and its bad inputs."""

from __future__ import annotations

from pathlib import Path

import torch

from codec_lab.registry.compressai_zoo import unregister
from tests.cli.conftest import assert_clean_failure, invoke


def test_registers_and_exports_a_checkpoint(cli_run: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "run.pth.tar"
    try:
        result = invoke("compressai", cli_run, "--name", "cli-run", "--export", ckpt)
        assert result.exit_code == 0, result.stderr
        assert "cli-run" in result.stdout and "eval_model" in result.stdout
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        assert any(k.startswith("encoder.") for k in state)
    finally:
        unregister("cli-run")


def test_runs_a_script_with_the_codec_registered(cli_run: Path, tmp_path: Path) -> None:
    script = tmp_path / "uses_zoo.py"
    script.write_text(
        "import sys, compressai.zoo\n"
        "net = compressai.zoo.image_models[sys.argv[1]](quality=1, pretrained=True)\n"
        "print('built', type(net).__name__, sum(p.numel() for p in net.parameters()))\n"
    )
    try:
        result = invoke("compressai", cli_run, "--name", "cli-script", "--", script, "cli-script")
        assert result.exit_code == 0, result.stderr
        assert "built Codec_cli_script" in result.stdout
    finally:
        unregister("cli-script")


def test_not_a_run(tmp_path: Path) -> None:
    assert_clean_failure(invoke("compressai", tmp_path), contains="is not a codec run")


def test_a_name_compressai_already_has(cli_run: Path) -> None:
    result = invoke("compressai", cli_run, "--name", "bmshj2018-factorized")
    assert_clean_failure(result, contains="already has a model named 'bmshj2018-factorized'")


def test_a_bad_name(cli_run: Path) -> None:
    assert_clean_failure(invoke("compressai", cli_run, "--name", "My Codec"), contains="kebab-case")


def test_a_missing_script(cli_run: Path, tmp_path: Path) -> None:
    try:
        result = invoke("compressai", cli_run, "--name", "cli-missing", "--", tmp_path / "nope.py")
        assert_clean_failure(result, contains="does not exist")
    finally:
        unregister("cli-missing")


def test_an_unwritable_export(cli_run: Path, tmp_path: Path) -> None:
    try:
        result = invoke("compressai", cli_run, "--name", "cli-export", "--export", tmp_path / "no" / "x.pth")
        assert_clean_failure(result, contains="does not exist")
        assert not (tmp_path / "no").exists()
    finally:
        unregister("cli-export")
