"""``codec fit-coder``: refit or swap a trained run's coder, the transform untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import yaml

from codec_lab.corelib.files import decode_bytes, encode_image
from codec_lab.registry.runs import load_run
from tests.cli.conftest import assert_clean_failure, invoke
from tests.helpers import image_tensor


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _transform(run: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_run(run).state_dict().items()
            if not k.startswith("coder.") and k != "config_digest"}  # fmt: skip


def test_refit_keeps_the_transform_and_leaves_the_run_alone(cli_run: Path, data_dirs, tmp_path: Path) -> None:
    before = _digests(cli_run)
    out = tmp_path / "refit"
    result = invoke("fit-coder", "--model", cli_run, "--data", data_dirs["val"], "--out", out)
    assert result.exit_code == 0, result.stderr
    assert _digests(cli_run) == before  # the original run is read only
    new, old = _transform(out), _transform(cli_run)
    assert new.keys() == old.keys() and all(torch.equal(new[k], old[k]) for k in new)
    info = json.loads((out / "run.json").read_text())
    assert info["refitted_from"] == str(cli_run) and info["coder_fitting"] == "counted"
    assert info["fit_images"] == 2  # the two --data images
    # fitted on other images: other tables, same transform
    assert not torch.equal(load_run(out).coder.freq_y, load_run(cli_run).coder.freq_y)
    codec = load_run(out)
    x = image_tensor(40, 48, seed=4)
    data = encode_image(codec, x)
    assert torch.equal(decode_bytes(load_run(out), data), decode_bytes(codec, data))
    assert "Run folder:" in result.stdout and "report.md" not in result.stdout
    assert (out / "report.md").read_text().startswith("# codec-lab run (coder refitted)")


def test_default_out_is_beside_the_run(cli_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "myrun"
    shutil.copytree(cli_run, run)
    result = invoke("fit-coder", "--model", run)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "myrun-histogram" / "weights.safetensors").is_file()
    err = assert_clean_failure(invoke("fit-coder", "--model", run), contains="already exists")
    assert "--force" in err
    assert invoke("fit-coder", "--model", run, "--force").exit_code == 0


def test_swapping_to_a_trained_coder(cli_run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CODEC_PLUGINS", "tests.plugins.coders.tiny_context")
    out = tmp_path / "ctx"
    result = invoke("fit-coder", "--model", cli_run, "--coder", "tiny-context", "--out", out,
                    "--set", "train.coder_steps=6")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["coder_fitting"] == "trained" and info["fit_steps"] == 6
    assert (out / "coder_log.csv").is_file()
    assert "trained 6 steps" in result.stdout
    codec = load_run(out)
    assert type(codec.coder).name == "tiny-context"
    x = image_tensor(40, 48, seed=5)
    with torch.no_grad():
        ref = codec(x)["x_hat"].clamp(0, 1)
    assert torch.equal(decode_bytes(codec, encode_image(codec, x)), ref)


def test_a_coder_that_cannot_work_is_refused_with_the_reason(tmp_path: Path, data_dirs) -> None:
    from tests.helpers import TINY_SETS

    run = tmp_path / "ent"
    built = invoke("build", "--rate", "entropy", "--steps", "1", "--out", run, "--data", data_dirs["train"],
                   "--val", data_dirs["val"], "--set", "model.encoder.channels=8",
                   "--set", "model.encoder.latent_channels=4", *TINY_SETS[-4:])  # fmt: skip
    assert built.exit_code == 0, built.stderr
    result = invoke("fit-coder", "--model", run, "--coder", "histogram", "--out", tmp_path / "h")
    assert_clean_failure(result, contains="finite alphabet")
    assert not (tmp_path / "h").exists()


def test_only_the_coder_and_training_keys_may_change(cli_run: Path, tmp_path: Path) -> None:
    result = invoke("fit-coder", "--model", cli_run, "--out", tmp_path / "x", "--set", "model.rate.keep=0.5")
    assert_clean_failure(result, contains="fit-coder changes only the coder")
    result = invoke("fit-coder", "--model", cli_run, "--out", cli_run, "--force")
    assert_clean_failure(result, contains="is the run being refitted")


def test_a_recorded_data_folder_that_is_not_here_asks_for_data(cli_run: Path, tmp_path: Path,
                                                               monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A shipped model records the folders it was built on, relative to where it was built; from
    another folder the user is asked for --data / --val, not shown a path they never typed."""
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "moved"
    copy.mkdir()
    for f in cli_run.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["data"] = {"train": "no/such/place/train", "val": "no/such/place/val"}
    (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = invoke("fit-coder", "--model", copy, "--out", tmp_path / "refit")
    err = assert_clean_failure(result, contains="was trained on no/such/place/train")
    assert "--data DIR" in err
    result = invoke("fit-coder", "--model", copy, "--data", cli_run.parent, "--out", tmp_path / "refit")
    err = assert_clean_failure(result, contains="was validated on no/such/place/val")
    assert "--val DIR" in err
    assert not (tmp_path / "refit").exists()
