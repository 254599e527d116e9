"""``codec build --init``: training starts from another run's weights (fine-tuning)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from codec_lab.corelib.checkpoint import load_checkpoint
from tests.cli.conftest import assert_clean_failure, invoke
from tests.helpers import TINY_SETS


def _transform(run: Path) -> dict[str, torch.Tensor]:
    """The encoder's and decoder's weights (a coder fit rewrites the coder's own tables, and a
    training forward moves batch-norm statistics whatever the learning rate)."""
    return {k: v for k, v in load_file(str(run / "weights.safetensors")).items()
            if k.startswith(("encoder.", "decoder.")) and ".running_" not in k
            and not k.endswith("num_batches_tracked")}  # fmt: skip


def _build(data: dict[str, Path], out: Path, *extra: str | Path):
    # Another seed than the source's: random weights would differ from it everywhere; a
    # vanishing learning rate: one step leaves the starting weights as they were.
    return invoke("build", "--steps", "1", "--out", out, "--data", data["train"], "--val", data["val"],
                  *TINY_SETS, "--set", "train.seed=7", "--set", "train.lr=1e-12",
                  "--set", "train.aux_lr=1e-12", *extra)  # fmt: skip


def test_init_starts_from_a_finished_runs_weights(cli_run: Path, data_dirs: dict[str, Path],
                                                  tmp_path: Path) -> None:  # fmt: skip
    source = _transform(cli_run)
    fine = tmp_path / "fine"
    result = _build(data_dirs, fine, "--init", cli_run, "--set", "model.rate.keep=0.3")
    assert result.exit_code == 0, result.stderr
    assert f"starting from the weights of {cli_run}" in result.stderr
    got = _transform(fine)
    assert got.keys() == source.keys()
    for k, v in source.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=1e-6, msg=k)
    # the record names the source and its weights, in run.json and in every checkpoint
    info = json.loads((fine / "run.json").read_text())
    source_digest = json.loads((cli_run / "run.json").read_text())["weights_digest"]
    assert info["init"] == {"from": str(cli_run), "weights_digest": source_digest}
    assert load_checkpoint(fine / "checkpoint.pt")["notes"]["init"] == info["init"]
    # without --init the same command starts from other (random) weights
    scratch = tmp_path / "scratch"
    assert _build(data_dirs, scratch).exit_code == 0
    other = _transform(scratch)
    assert any(not torch.allclose(other[k], v, atol=1e-3) for k, v in source.items())
    assert "init" not in json.loads((scratch / "run.json").read_text())


def test_init_from_an_unfinished_builds_checkpoint(cli_run: Path, data_dirs: dict[str, Path],
                                                   tmp_path: Path) -> None:  # fmt: skip
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.yaml", "checkpoint.pt"):
        shutil.copy(cli_run / name, unfinished / name)
    ckpt = load_checkpoint(unfinished / "checkpoint.pt")
    fine = tmp_path / "fine"
    result = _build(data_dirs, fine, "--init", unfinished)
    assert result.exit_code == 0, result.stderr
    assert f"its checkpoint at step {ckpt['loop']['step']}" in result.stderr
    assert json.loads((fine / "run.json").read_text())["init"]["step"] == ckpt["loop"]["step"]
    got = _transform(fine)
    for k, v in got.items():
        torch.testing.assert_close(v, ckpt["model"][k], rtol=0, atol=1e-6, msg=k)


def test_init_refuses_what_it_cannot_load(cli_run: Path, data_dirs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    # another architecture: which tensors differ, and no run folder is left behind
    wide = _build(data_dirs, out, "--init", cli_run, "--set", "model.encoder.channels=16")
    err = assert_clean_failure(wide, contains="do not fit this codec")
    assert "of another shape, e.g. encoder." in err
    assert not out.exists()
    # a folder that is no run, a name that is neither
    assert_clean_failure(_build(data_dirs, out, "--init", tmp_path), contains="has no weights to start from")
    assert_clean_failure(_build(data_dirs, out, "--init", "entropy-q9"), contains="did you mean")
    assert not out.exists()
    # --resume continues with the run's own start
    assert_clean_failure(invoke("build", "--resume", cli_run, "--init", cli_run),
                         contains="--init cannot change it")  # fmt: skip


def test_init_names_the_preset_a_shipped_model_needs(tmp_path: Path) -> None:
    # the shipped models are `cpu`-preset networks; the default preset is `quick`
    out = tmp_path / "out"
    result = invoke("build", "--rate", "entropy", "--init", "entropy-q3", "--steps", "1", "--out", out)
    assert_clean_failure(result, contains="built with --preset cpu, this build uses quick: pass --preset cpu")
    assert not out.exists()
