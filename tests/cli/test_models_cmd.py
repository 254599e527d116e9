"""``codec models`` and ``--model NAME`` / ``--quality`` / decompress-by-digest on the commands.

Tiny trained runs are shipped into a temporary folder (``shipped_dir`` redirected) as the
default family's quality 3 and 1 points.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec_lab.corelib.container import unpack
from codec_lab.registry import ship_model
from codec_lab.registry.shipped_models import DEFAULT_FAMILY, DEFAULT_QUALITY, family_point
from tests.cli.conftest import assert_clean_failure, invoke

Q3 = f"{DEFAULT_FAMILY}-q{DEFAULT_QUALITY}"
Q1 = f"{DEFAULT_FAMILY}-q1"


def _digest(cdl: Path) -> str:
    return unpack(cdl.read_bytes())[0].digest


# ---------------------------------------------------------------------------- codec models
def test_models_without_any_shipped(shipped: Path) -> None:
    result = invoke("models")
    assert result.exit_code == 0, result.stderr
    assert "No trained models are shipped" in result.stdout and "--model runs/e1" in result.stdout
    assert json.loads(invoke("models", "--json").stdout) == []


def test_models_table_and_json(family: Path) -> None:
    result = invoke("models")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert f"{Q3} (default)" in text and Q1 in text and f"{Q1} (default)" not in text
    assert "admm + histogram" in text and "measured on" in text  # tiny runs: not Kodak, not called so
    assert "Kodak" not in text.split("Metrics:")[0]
    assert "real files" in text and "--quality" in text
    rows = json.loads(invoke("models", "--json").stdout)
    assert [r["name"] for r in rows] == [Q1, Q3]
    assert [r["default"] for r in rows] == [False, True]
    assert rows[1]["command"] == "codec build --rate admm --steps 3 --out runs/tiny"
    assert Path(rows[1]["path"]) == family / Q3 and len(rows[1]["sha256"]) == 64


# ---------------------------------------------------------------------------- compress / decompress
def test_compress_and_decompress_with_no_model(family: Path, image_file, tmp_path: Path) -> None:
    img = image_file("photo.png")
    cdl, png = tmp_path / "photo.cdl", tmp_path / "photo.out.png"
    result = invoke("compress", img, "-o", cdl)
    assert result.exit_code == 0, result.stderr
    assert f"model {Q3}" in result.stdout
    assert _digest(cdl) == family_point(DEFAULT_FAMILY).model_digest
    result = invoke("decompress", cdl, "-o", png)  # the header's digest names the model
    assert result.exit_code == 0, result.stderr
    by_path = tmp_path / "by-path.png"
    assert invoke("decompress", cdl, "--model", family / Q3, "-o", by_path).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(by_path)))


def test_quality_and_family_pick_the_point(family: Path, image_file, tmp_path: Path) -> None:
    img = image_file()
    q1 = family_point(DEFAULT_FAMILY, 1).model_digest
    for i, args in enumerate((["--quality", "1"], ["--model", DEFAULT_FAMILY, "-q", "1"], ["--model", Q1])):
        cdl = tmp_path / f"{i}.cdl"
        result = invoke("compress", img, "-o", cdl, *args)
        assert result.exit_code == 0, (args, result.stderr)
        assert _digest(cdl) == q1, args
    # decompress --model FAMILY picks the member that made the file.
    result = invoke("decompress", tmp_path / "0.cdl", "--model", DEFAULT_FAMILY, "-o", tmp_path / "0.png")
    assert result.exit_code == 0, result.stderr


def test_quality_with_a_run_folder_or_a_single_model(family: Path, cli_run: Path, image_file,
                                                     tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "o.cdl"
    assert_clean_failure(invoke("compress", image_file(), "--model", cli_run, "--quality", "2", "-o", out),
                         contains="is a run folder")  # fmt: skip
    assert_clean_failure(invoke("compress", image_file(), "--model", Q1, "--quality", "3", "-o", out),
                         contains=f"--model {DEFAULT_FAMILY} --quality 3")  # fmt: skip
    assert_clean_failure(invoke("compress", image_file(), "--quality", "2", "-o", out),
                         contains="has no quality 2 (it has: 1, 3)")  # fmt: skip
    assert_clean_failure(invoke("compress", image_file(), "--quality", "5", "-o", out),
                         contains="not a rate point")  # fmt: skip
    assert not out.exists()


def test_a_run_folder_still_works_and_wins(family: Path, cli_run: Path, image_file, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    shutil.copytree(cli_run, tmp_path / Q3)  # a folder of the same name as a shipped model
    result = invoke("compress", image_file(), "--model", Q3, "-o", "a.cdl")
    assert result.exit_code == 0, result.stderr
    assert "model " not in result.stdout.split(")")[-1]  # not labelled a shipped model
    assert _digest(tmp_path / "a.cdl") != family_point(DEFAULT_FAMILY).model_digest
    result = invoke("decompress", "a.cdl", "--model", Q3, "-o", "a.png")
    assert result.exit_code == 0, result.stderr


def test_unknown_model_name(family: Path, image_file, tmp_path: Path) -> None:
    result = invoke("compress", image_file(), "--model", "entropyy", "-o", tmp_path / "o.cdl")
    err = assert_clean_failure(result, contains="did you mean 'entropy'")
    assert Q1 in err and "or a run folder from `codec build`" in err
    assert_clean_failure(invoke("eval", "--model", "entropyy", "--data", tmp_path), contains="did you mean")
    assert_clean_failure(invoke("fit-coder", "--model", "entropyy"), contains="did you mean")


def test_no_default_model_shipped(shipped: Path, image_file, tmp_path: Path) -> None:
    assert_clean_failure(invoke("compress", image_file(), "-o", tmp_path / "o.cdl"),
                         contains="ships no default model")  # fmt: skip


def test_decompress_a_file_of_an_unshipped_run(family: Path, cli_run: Path, image_file,
                                               tmp_path: Path) -> None:  # fmt: skip
    cdl = tmp_path / "a.cdl"
    assert invoke("compress", image_file(), "--model", cli_run, "-o", cdl).exit_code == 0
    err = assert_clean_failure(invoke("decompress", cdl, "-o", tmp_path / "a.png"),
                               contains="none of the shipped models")  # fmt: skip
    assert "--model RUN" in err
    assert not (tmp_path / "a.png").exists()


def test_decompress_with_the_wrong_shipped_model_names_the_right_one(family: Path, image_file,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    cdl = tmp_path / "a.cdl"
    assert invoke("compress", image_file(), "-o", cdl).exit_code == 0
    assert_clean_failure(invoke("decompress", cdl, "--model", Q1, "-o", tmp_path / "a.png"),
                         contains=f"pass --model {Q3}")  # fmt: skip


# ---------------------------------------------------------------------------- other commands
def test_eval_and_fit_coder_take_a_shipped_name(family: Path, data_dirs: dict[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    result = invoke("eval", "--model", DEFAULT_FAMILY, "--quality", "1", "--data", data_dirs["val"])
    assert result.exit_code == 0, result.stderr
    assert f"{Q1} on" in result.stdout
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in (family / Q1).iterdir())
    result = invoke("fit-coder", "--model", Q1)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / f"{Q1}-histogram" / "weights.safetensors").is_file()  # here, not in the package
    assert sorted(p.name for p in (family / Q1).iterdir()) == before


def test_compare_takes_a_shipped_run(family: Path, tmp_path: Path) -> None:
    result = invoke("compare", "--run", Q1, "--baseline", "jpeg", "--dry-run", "--out", tmp_path / "c")
    assert result.exit_code == 0, result.stderr
    assert f"run-{Q1}" in result.stdout
    assert_clean_failure(invoke("compare", "--run", "nope", "--dry-run"), contains="--run 'nope'")


def test_models_says_which_model_was_fine_tuned(shipped: Path, trained_run: Path, tmp_path: Path) -> None:
    # a run started with --init keeps that in run.json; shipping carries it into the index
    run = tmp_path / "fine"
    shutil.copytree(trained_run, run)
    info = json.loads((run / "run.json").read_text())
    info["init"] = {"from": "runs/base", "weights_digest": "0" * 16, "step": 9120}
    (run / "run.json").write_text(json.dumps(info))
    ship_model.ship(run, "fine", command="codec build --init runs/base --out runs/fine")
    rows = json.loads(invoke("models", "--json").stdout)
    assert rows[0]["training"]["init"] == info["init"]
    assert "fine-tuned from a 9,120-step build" in invoke("models").stdout


def test_models_counts_every_fine_tuning_round(shipped: Path, trained_run: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # base checkpoint → round a (1,000 steps) → round b (500) → the shipped run: each round's
    # run.json names the one before; the index keeps the chain, the table counts it
    monkeypatch.chdir(tmp_path)
    info = json.loads((trained_run / "run.json").read_text())
    digest = "0" * 16
    chain = [("a", 1000, {"from": "runs/base", "weights_digest": digest, "step": 9120}),
             ("b", 500, {"from": "runs/a", "weights_digest": digest}),
             ("c", info["steps"], {"from": "runs/b", "weights_digest": digest})]  # fmt: skip
    for name, steps, init in chain:
        shutil.copytree(trained_run, tmp_path / "runs" / name)
        doc = {**info, "steps": steps, "init": init, "train_seconds": 600.0, "fit_seconds": 0.0}
        (tmp_path / "runs" / name / "run.json").write_text(json.dumps(doc))
    ship_model.ship("runs/c", "fine", command="codec build --init runs/b --out runs/c")
    init = json.loads(invoke("models", "--json").stdout)[0]["training"]["init"]
    assert init["from"] == "runs/b"
    assert [(r["run"], r["steps"]) for r in init["rounds"]] == [("a", 1000), ("b", 500)]
    assert init["base"] == {"from": "runs/base", "step": 9120}
    out = " ".join(invoke("models").stdout.split())
    assert f"{1500 + info['steps']:,} steps fine-tuned in 3 rounds from a 9,120-step build, 30 min," in out
