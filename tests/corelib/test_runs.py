"""Run-folder files: validation of the folder, weights, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from codec_lab.corelib.errors import RunError
from codec_lab.corelib.runs import check_run_dir, load_weights, read_config, save_weights, write_json
from codec_lab.registry.compose import build_codec
from tests.conftest import tiny_config


def test_check_run_dir(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="does not exist"):
        check_run_dir(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunError, match="not a folder"):
        check_run_dir(tmp_path / "f")
    with pytest.raises(RunError, match="not a codec run.*config.yaml, weights.safetensors"):
        check_run_dir(tmp_path)
    (tmp_path / "config.yaml").write_text("model: {}\n")
    with pytest.raises(RunError, match=r"missing weights.safetensors\)"):
        check_run_dir(tmp_path)
    # a build's config without weights: a build that stopped, with the command to continue it
    (tmp_path / "config.yaml").write_text("model: {}\ntrain: {}\n")
    with pytest.raises(RunError, match=r"unfinished build: it stopped before its first checkpoint.*"
                                       r"codec build --resume"):
        check_run_dir(tmp_path)


def test_trained_run_is_a_run(trained_run: Path) -> None:
    assert check_run_dir(trained_run) == trained_run
    assert read_config(trained_run)["model"]["rate"]["name"] == "admm"


@pytest.mark.parametrize("text", ["model: [\n", "train: {}\n", "- 1\n"])
def test_read_config_refuses_bad_files(tmp_path: Path, text: str) -> None:
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(RunError, match="config.yaml"):
        read_config(tmp_path)


def test_weights_round_trip(tiny_codec, registry, tmp_path: Path) -> None:
    save_weights(tiny_codec, tmp_path / "w.safetensors")
    torch.manual_seed(9)
    other = build_codec(tiny_codec.config, registry)
    load_weights(other, tmp_path / "w.safetensors")
    assert other.weights_digest() == tiny_codec.weights_digest()


def test_damaged_weights(tiny_codec, tmp_path: Path) -> None:
    (tmp_path / "w.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(RunError, match="is damaged"):
        load_weights(tiny_codec, tmp_path / "w.safetensors")


def test_weights_of_another_architecture(tiny_codec, registry, tmp_path: Path) -> None:
    cfg = tiny_config(registry, encoder={"name": "cae", "channels": 16, "blocks": 0, "latent_channels": 4})
    save_weights(build_codec(cfg["model"], registry), tmp_path / "w.safetensors")
    with pytest.raises(RunError, match="does not fit the codec"):
        load_weights(tiny_codec, tmp_path / "w.safetensors")


def test_write_json(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"x": torch.tensor(1.5).item(), "y": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1.5, "y": [1, 2]}
