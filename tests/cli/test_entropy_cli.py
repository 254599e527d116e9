"""``codec build --rate entropy`` end to end: the default composition, aux training, real files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from codec_lab.corelib.files import encode_image
from codec_lab.registry.runs import load_run
from tests.cli.conftest import invoke
from tests.helpers import decode_in_fresh_process, image_tensor

ENTROPY_SETS = [
    "--set", "model.encoder.channels=8",
    "--set", "model.encoder.latent_channels=6",
    "--set", "train.batch_size=2",
    "--set", "train.crop=48",
    "--set", "train.device=cpu",
    "--set", "train.epochs=2",
    "--set", "train.steps_per_epoch=2",
]  # fmt: skip


@pytest.fixture(scope="module")
def entropy_run(tmp_path_factory: pytest.TempPathFactory, data_dirs: dict[str, Path]) -> Path:
    out = tmp_path_factory.mktemp("ent") / "run"
    result = invoke("build", "--rate", "entropy", "--out", out, "--data", data_dirs["train"],
                    "--val", data_dirs["val"], *ENTROPY_SETS)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return out


def test_build_composes_compressais_factorized_prior(entropy_run: Path) -> None:
    cfg = yaml.safe_load((entropy_run / "config.yaml").read_text())
    names = {kind: cfg["model"][kind]["name"] for kind in cfg["model"]}
    assert names == {"encoder": "gdn", "quantizer": "noise", "rate": "entropy", "coder": "factorized",
                     "decoder": "gdn"}  # fmt: skip
    assert cfg["train"]["loss"] == "mse"  # the preset's per-rate recipe
    assert cfg["model"]["decoder"]["latent_channels"] == 6
    rows = list(csv.DictReader((entropy_run / "train_log.csv").open()))
    assert len(rows) == 2 and all(float(r["est_bpp"]) > 0 for r in rows)
    metrics = json.loads((entropy_run / "metrics.json").read_text())
    assert metrics["results"]["bpp"][0] > 0


def test_a_file_decodes_identically_in_a_fresh_process(entropy_run: Path, tmp_path: Path) -> None:
    data = encode_image(load_run(entropy_run), image_tensor(72, 88, seed=12))
    here, _ = decode_in_fresh_process(entropy_run, data, tmp_path, threads=1)
    assert np.array_equal(np.load(tmp_path / "there.npy"), here.numpy())


def test_another_thread_count_decodes_the_same_image(entropy_run: Path, tmp_path: Path) -> None:
    """The symbols are exact (checked by CRC); the transposed convolutions of ``gdn`` sum in a
    thread-dependent order, so the floats may differ in the last bits, not the 8-bit image."""
    data = encode_image(load_run(entropy_run), image_tensor(72, 88, seed=13))
    here, _ = decode_in_fresh_process(entropy_run, data, tmp_path, threads=2)
    there = np.load(tmp_path / "there.npy")
    assert np.abs(there - here.numpy()).max() < 1e-6
    assert np.array_equal(np.round(there * 255), np.round(here.numpy() * 255))


def test_dry_run_shows_the_unbounded_alphabet() -> None:
    result = invoke("build", "--rate", "entropy", "--dry-run", *ENTROPY_SETS)
    assert result.exit_code == 0, result.stderr
    assert "alphabet unbounded integers" in result.stdout and "factorized" in result.stdout


def test_cli_compress_and_eval(entropy_run: Path, data_dirs, image_file, tmp_path: Path) -> None:
    img = image_file("p.png", 40, 56)
    cdl, png = tmp_path / "p.cdl", tmp_path / "p-dec.png"
    assert invoke("compress", img, "-m", entropy_run, "-o", cdl).exit_code == 0
    assert invoke("decompress", cdl, "-m", entropy_run, "-o", png).exit_code == 0
    result = invoke("eval", "-m", entropy_run, "-d", data_dirs["val"])
    assert result.exit_code == 0, result.stderr
    assert "kept" not in result.stdout  # nothing is masked
