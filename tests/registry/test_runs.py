"""Run folders: what train_run writes, and load_run reading it back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from codec_lab.corelib.errors import OutputError
from codec_lab.corelib.runs import torch_load_checkpoint
from codec_lab.registry.components import Registry
from codec_lab.registry.runs import describe, load_run, train_run
from tests.conftest import tiny_config

RUN_FILES = {"config.yaml", "weights.safetensors", "train_log.csv", "metrics.json", "report.md",
             "checkpoint.pt", "run.json"}  # fmt: skip


def test_run_folder_has_every_file(trained_run: Path) -> None:
    assert {p.name for p in trained_run.iterdir()} == RUN_FILES


def test_config_is_the_resolved_config(trained_run: Path, data_dirs) -> None:
    cfg = yaml.safe_load((trained_run / "config.yaml").read_text())
    expected = tiny_config(Registry(), {"train": str(data_dirs["train"]), "val": str(data_dirs["val"])})
    assert cfg == expected


def test_metrics_follow_the_compressai_schema(trained_run: Path) -> None:
    doc = json.loads((trained_run / "metrics.json").read_text())
    assert {"name", "description", "results"} <= set(doc)
    assert doc["name"] == "cae+admm"
    res = doc["results"]
    for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"):
        assert len(res[key]) == 1 and isinstance(res[key][0], float)
    assert [r["image"] for r in doc["per_image"]] == ["img0.png", "img1.png"]


def test_run_json_digest_matches_the_weights(trained_run: Path) -> None:
    info = json.loads((trained_run / "run.json").read_text())
    codec = load_run(trained_run)
    assert info["weights_digest"] == codec.weights_digest()
    assert info["steps"] == 3 and info["train_images"] == 3
    assert info["components"]["rate"] == {"name": "admm", "version": "0.1"}
    assert info["rate"]["projected"] is True


def test_train_log_and_checkpoint(trained_run: Path) -> None:
    with (trained_run / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["step"] == "3" and "admm_step" in rows[0]["event"]
    ckpt = torch_load_checkpoint(trained_run / "checkpoint.pt")
    assert ckpt["step"] == 3


def test_report_summarises_the_run(trained_run: Path) -> None:
    text = (trained_run / "report.md").read_text()
    assert text.startswith("# codec-lab run")
    for word in ("| rate | admm 0.1 |", "| coder | histogram 0.1 |", "img0.png", "**mean**", "3 steps"):
        assert word in text


def test_load_run_is_in_eval_mode(trained_run: Path) -> None:
    codec = load_run(trained_run)
    assert not codec.training and bool(codec.rate.projected)


def test_same_config_same_seed_same_weights(trained_run: Path, tmp_path: Path) -> None:
    cfg = yaml.safe_load((trained_run / "config.yaml").read_text())
    first, _, _ = train_run(cfg, tmp_path / "first")
    second, _, _ = train_run(cfg, tmp_path / "second")
    assert first.weights_digest() == second.weights_digest()


def test_train_run_refuses_a_used_folder(data_dirs, tmp_path: Path) -> None:
    cfg = tiny_config(Registry(), {"train": str(data_dirs["train"]), "val": str(data_dirs["val"])})
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("keep me")
    with pytest.raises(OutputError, match="not empty"):
        train_run(cfg, tmp_path / "used")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="a file is there"):
        train_run(cfg, tmp_path / "file")
    with pytest.raises(OutputError, match="cannot create run folder"):
        train_run(cfg, tmp_path / "file" / "run")
    assert (tmp_path / "used" / "x").read_text() == "keep me"


def test_describe(tiny_codec) -> None:
    info = describe(tiny_codec, 64)
    assert info["latent_shape"] == [4, 8, 8] and info["patch"] == 64
    assert info["streams"] == [{"name": "y", "channels": 4, "alphabet": 15}]
    assert info["symbols_per_pixel"] == pytest.approx(4 * 64 / 64**2)
    assert info["parameters"] == sum(p.numel() for p in tiny_codec.parameters())
    assert info["components"]["rate"]["parameters"] == 0
