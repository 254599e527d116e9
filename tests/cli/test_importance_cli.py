"""``codec build --rate importance`` end to end: two stages, the map stream, eval columns."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from codec_lab.corelib.files import encode_image
from codec_lab.registry.runs import load_run
from tests.cli.conftest import invoke
from tests.helpers import decode_in_fresh_process, image_tensor

IMPORTANCE_SETS = [
    "--set", "model.encoder.width=0.0625",
    "--set", "model.encoder.latent_channels=8",
    "--set", "model.rate.levels=4",
    "--set", "train.batch_size=2",
    "--set", "train.crop=48",
    "--set", "train.device=cpu",
    "--set", "train.epochs=4",
    "--set", "train.steps_per_epoch=2",
    "--set", "train.warmup_epochs=0",
]  # fmt: skip


@pytest.fixture(scope="module")
def importance_run(tmp_path_factory: pytest.TempPathFactory, data_dirs: dict[str, Path]) -> Path:
    out = tmp_path_factory.mktemp("imp") / "run"
    result = invoke("build", "--rate", "importance", "--out", out, "--data", data_dirs["train"],
                    "--val", data_dirs["val"], *IMPORTANCE_SETS)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return out


def test_build_composes_the_content_weighted_codec_and_runs_two_stages(importance_run: Path) -> None:
    rows = list(csv.DictReader((importance_run / "train_log.csv").open()))
    assert len(rows) == 4
    assert [float(r["kept"]) for r in rows[:1]] == [1.0]  # stage 1: every channel kept
    assert "importance_stage=2" in rows[0]["event"]  # stage1 = 0.3 of 4 epochs → after epoch 1
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[1] == pytest.approx(lrs[0] * 0.1)  # stage 2 at a tenth of the learning rate
    report = (importance_run / "report.md").read_text()
    for word in ("content-weighted", "multilevel", "importance", "map bpp", "y bpp", "kept"):
        assert word in report, word


def test_compress_eval_show_map_and_code_bits(importance_run: Path, data_dirs, image_file,
                                              tmp_path: Path) -> None:  # fmt: skip
    img = image_file("p.png", 40, 56)
    cdl, png = tmp_path / "p.cdl", tmp_path / "p-dec.png"
    assert invoke("compress", img, "-m", importance_run, "-o", cdl).exit_code == 0
    assert invoke("decompress", cdl, "-m", importance_run, "-o", png).exit_code == 0
    result = invoke("eval", "-m", importance_run, "-d", data_dirs["val"])
    assert result.exit_code == 0, result.stderr
    assert re.search(r"map bpp.*y bpp", result.stdout.replace("\n", " ")), result.stdout


@pytest.mark.parametrize(("sets", "match"), [
    (["--set", "model.rate.threshold=1.5"], r"threshold must be in \(0, 1\]"),
    (["--set", "model.rate.levels=3"], "valid levels for 8 channels: 2, 4, 8"),
    (["--set", "model.quantizer.levels=1"], r"\[2, 256\]"),
])  # fmt: skip
def test_out_of_range_settings_are_refused_at_build(sets: list[str], match: str) -> None:
    result = invoke("build", "--rate", "importance", "--dry-run", *IMPORTANCE_SETS, *sets)
    assert result.exit_code != 0 and re.search(match, result.stderr), result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_decodes_identically_in_a_fresh_process(importance_run: Path, tmp_path: Path) -> None:
    """The map → mask → code chain gives the same pixels in another process and thread count."""
    data = encode_image(load_run(importance_run), image_tensor(72, 88, seed=11))
    here, _ = decode_in_fresh_process(importance_run, data, tmp_path, threads=2)
    assert np.array_equal(np.load(tmp_path / "there.npy"), here.numpy())
