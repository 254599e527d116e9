"""The context-model coders from the command line: build with one, add one to a trained run,
refuse one where the alphabet is unbounded; files decode in a fresh process."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from codec_lab.corelib.checkpoint import load_checkpoint
from codec_lab.corelib.files import encode_image
from codec_lab.registry.runs import load_run
from tests.cli.conftest import assert_clean_failure, invoke
from tests.cli.test_importance_cli import IMPORTANCE_SETS
from tests.helpers import TINY_SETS, decode_in_fresh_process, image_tensor

CODER_SETS = [
    "--set", "model.coder.width=2",
    "--set", "model.coder.map_width=4",
    "--set", "model.coder.res_blocks=0",
    "--set", "train.coder_steps=4",
]  # fmt: skip


@pytest.fixture(scope="module")
def inclined_run(tmp_path_factory: pytest.TempPathFactory, data_dirs: dict[str, Path]) -> Path:
    out = tmp_path_factory.mktemp("tcae") / "run"
    result = invoke("build", "--rate", "importance", "--coder", "inclined-tcae", "--out", out,
                    "--data", data_dirs["train"], "--val", data_dirs["val"],
                    *IMPORTANCE_SETS, *CODER_SETS)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return out


def test_build_trains_the_transform_then_the_coder(inclined_run: Path) -> None:
    info = json.loads((inclined_run / "run.json").read_text())
    assert info["components"]["coder"]["name"] == "inclined-tcae"
    assert info["fit_steps"] == 4
    rows = list(csv.DictReader((inclined_run / "coder_log.csv").open()))
    assert rows and int(rows[-1]["step"]) == 4 and float(rows[-1]["loss"]) > 0
    assert load_checkpoint(inclined_run / "checkpoint.pt")["fit"]["step"] == 4
    codec = load_run(inclined_run)
    assert codec.coder.fitted and set(codec.coder.nets) == {"map", "y"}


def test_a_file_decodes_in_a_fresh_process(inclined_run: Path, tmp_path: Path) -> None:
    codec = load_run(inclined_run)
    x = image_tensor(40, 56, seed=3)
    data = encode_image(codec, x)
    with torch.no_grad():
        ref = codec(x)["x_hat"].clamp(0, 1)
    here, _ = decode_in_fresh_process(inclined_run, data, tmp_path, threads=2)
    assert torch.equal(here, ref)
    there = torch.from_numpy(np.load(tmp_path / "there.npy"))
    assert torch.equal(there, here)


def test_fit_coder_adds_a_tcae_to_an_admm_run(cli_run: Path, data_dirs, tmp_path: Path) -> None:
    out = tmp_path / "admm-tcae"
    result = invoke("fit-coder", "--model", cli_run, "--coder", "tcae", "--out", out,
                    "--val", data_dirs["val"], *CODER_SETS)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "trained 4 steps" in result.stdout
    info = json.loads((out / "run.json").read_text())
    assert info["coder_fitting"] == "trained" and info["fit_steps"] == 4
    codec = load_run(out)
    assert type(codec.coder).name == "tcae" and codec.coder.fitted
    x = image_tensor(24, 32, seed=6)
    data = encode_image(codec, x)
    here, _ = decode_in_fresh_process(out, data, tmp_path, threads=1)
    with torch.no_grad():
        assert torch.equal(here, codec(x)["x_hat"].clamp(0, 1))


def test_an_unbounded_alphabet_is_refused_with_the_reason(tmp_path: Path, data_dirs) -> None:
    run = tmp_path / "ent"
    built = invoke("build", "--rate", "entropy", "--steps", "1", "--out", run, "--data", data_dirs["train"],
                   "--val", data_dirs["val"], "--set", "model.encoder.channels=8",
                   "--set", "model.encoder.latent_channels=4", *TINY_SETS[-4:])  # fmt: skip
    assert built.exit_code == 0, built.stderr
    for coder in ("inclined-tcae", "tcae"):
        result = invoke("fit-coder", "--model", run, "--coder", coder, "--out", tmp_path / coder)
        err = assert_clean_failure(result, contains="finite alphabet")
        assert "--quantizer stochastic" in err
        assert not (tmp_path / coder).exists()


def test_a_swapped_coder_is_sized_by_the_runs_preset(cli_run: Path, data_dirs, tmp_path: Path) -> None:
    import yaml

    from codec_lab.plugins.coders.tcae import PRESETS

    assert yaml.safe_load((cli_run / "config.yaml").read_text())["preset"] == "quick"
    out = tmp_path / "sized"
    result = invoke("fit-coder", "--model", cli_run, "--coder", "inclined-tcae", "--out", out,
                    "--val", data_dirs["val"], "--set", "train.coder_steps=1")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    coder = yaml.safe_load((out / "config.yaml").read_text())["model"]["coder"]
    assert {k: coder[k] for k in PRESETS["quick"]} == PRESETS["quick"]
