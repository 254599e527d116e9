"""Shipped models: packaging a run (``ship_model``), the index, name resolution, digests.

Every test ships tiny trained runs into a temporary folder (``shipped_dir`` redirected); the
real ``registry/shipped`` folder is tested in ``test_shipped_real.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from codec_lab.corelib.errors import ConfigError, OutputError, RunError
from codec_lab.corelib.results import Results
from codec_lab.registry import ship_model, shipped_models
from codec_lab.registry.runs import load_run
from codec_lab.registry.shipped_models import (
    DEFAULT_FAMILY,
    DEFAULT_QUALITY,
    by_digest,
    default_model,
    family_point,
    file_sha256,
    load_index,
    resolve,
    resolve_for_file,
    verify,
)

COMMAND = "codec build --rate admm --steps 3 --out runs/tiny"


# ---------------------------------------------------------------------------- packaging
def test_ship_copies_a_minimal_run_and_indexes_it(shipped: Path, trained_run: Path) -> None:
    model = ship_model.ship(trained_run, "tiny", command=COMMAND)
    folder = shipped / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == sorted(ship_model.SHIPPED_FILES)
    assert not [p for p in shipped.iterdir() if p.name.startswith(".")], "staging left behind"
    doc = json.loads((shipped / "models.json").read_text())
    assert doc["format"] == shipped_models.INDEX_FORMAT and len(doc["models"]) == 1
    [entry] = doc["models"]
    assert entry == model.to_dict()
    assert entry["family"] == "tiny" and entry["quality"] is None
    assert entry["sha256"] == file_sha256(trained_run / "weights.safetensors")
    assert entry["bytes"] == (trained_run / "weights.safetensors").stat().st_size
    codec = load_run(folder)  # what users load: the copy, as a run folder
    assert entry["model_digest"] == codec.weights_digest()
    run_info = json.loads((trained_run / "run.json").read_text())
    assert entry["model_digest"] == run_info["weights_digest"]
    means = Results.from_compressai(json.loads((trained_run / "metrics.json").read_text())).mean()
    assert entry["metrics"]["bpp"] == pytest.approx(means["bpp"], abs=1e-5)
    assert entry["metrics"]["psnr"] == pytest.approx(means["psnr"], abs=1e-4)
    assert entry["metrics"]["images"] == 2 and entry["metrics"]["set"] == "val"  # not Kodak: not called so
    assert entry["training"]["steps"] == run_info["steps"]
    assert entry["training"]["seconds"] == pytest.approx(run_info["train_seconds"] + run_info["fit_seconds"],
                                                         abs=0.1)  # fmt: skip
    assert entry["components"] == {"encoder": "cae", "quantizer": "stochastic", "rate": "admm",
                                   "coder": "histogram", "decoder": "cae"}  # fmt: skip
    assert entry["command"] == COMMAND and "codec-lab" in entry["source"]
    assert load_index() == [model]


def test_ship_refuses_an_existing_name_unless_forced(shipped: Path, trained_run: Path,
                                                     other_run: Path) -> None:  # fmt: skip
    ship_model.ship(trained_run, "tiny", command=COMMAND)
    with pytest.raises(OutputError, match="shipped already"):
        ship_model.ship(other_run, "tiny", command=COMMAND)
    assert load_index()[0].sha256 == file_sha256(trained_run / "weights.safetensors")
    replaced = ship_model.ship(other_run, "tiny", command=COMMAND, force=True)
    assert load_index() == [replaced]
    weights = "weights.safetensors"
    assert file_sha256(shipped / "tiny" / weights) == file_sha256(other_run / weights)
    assert not [p for p in shipped.iterdir() if p.name.startswith(".")]


def test_ship_refuses_unfinished_runs(shipped: Path, trained_run: Path, tmp_path: Path) -> None:
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    shutil.copy(trained_run / "config.yaml", interrupted)
    with pytest.raises(RunError, match="unfinished build"):
        ship_model.ship(interrupted, "x", command=COMMAND)
    unevaluated = tmp_path / "no-metrics"
    shutil.copytree(trained_run, unevaluated)
    (unevaluated / "metrics.json").unlink()
    with pytest.raises(RunError, match="no metrics.json"):
        ship_model.ship(unevaluated, "x", command=COMMAND)
    assert load_index() == [] and not (shipped / "x").exists()


def test_ship_refuses_modified_weights(shipped: Path, trained_run: Path, other_run: Path,
                                      tmp_path: Path) -> None:  # fmt: skip
    swapped = tmp_path / "swapped"
    shutil.copytree(trained_run, swapped)
    shutil.copy(other_run / "weights.safetensors", swapped)  # run.json names the other weights
    with pytest.raises(RunError, match="not the weights its run.json names"):
        ship_model.ship(swapped, "x", command=COMMAND)


def test_ship_refuses_clashes(family: Path, trained_run: Path, other_run: Path) -> None:
    with pytest.raises(ConfigError, match="has quality 1 already"):
        ship_model.ship(trained_run, "other", family=DEFAULT_FAMILY, quality=1, command=COMMAND)
    with pytest.raises(ConfigError, match="weights of shipped model"):
        ship_model.ship(trained_run, "again", command=COMMAND)
    for name in ("Bad Name", "-x"):
        with pytest.raises(ConfigError, match="kebab-case"):
            ship_model.ship(trained_run, name, command=COMMAND)
    with pytest.raises(ConfigError, match="not a rate point"):
        ship_model.ship(trained_run, "q9", quality=9, command=COMMAND)
    with pytest.raises(ConfigError, match="--command is empty"):
        ship_model.ship(trained_run, "c", command=" ")


def test_the_tool_from_the_command_line(shipped: Path, trained_run: Path, capsys) -> None:
    argv = [str(trained_run), "--name", "tiny-q2", "--family", "tiny", "--quality", "2", "--command", COMMAND]
    assert ship_model.main(argv) == 0
    assert "shipped tiny-q2 (tiny, quality 2)" in capsys.readouterr().out
    assert ship_model.main(argv) != 0
    err = capsys.readouterr().err
    assert err.startswith("Error: a model named 'tiny-q2' is shipped already") and "--force" in err
    assert ship_model.main([*argv, "--force"]) == 0


# ---------------------------------------------------------------------------- resolution
def test_no_model_is_the_default_family_point(family: Path) -> None:
    chosen = resolve(None)
    assert chosen.shipped == default_model()
    assert chosen.path == family / f"{DEFAULT_FAMILY}-q{DEFAULT_QUALITY}"
    assert chosen.label == f"{DEFAULT_FAMILY}-q{DEFAULT_QUALITY}"
    assert resolve(None, 1).shipped.name == f"{DEFAULT_FAMILY}-q1"
    with pytest.raises(ConfigError, match=r"has no quality 2 \(it has: 1, 3\)"):
        resolve(None, 2)
    with pytest.raises(ConfigError, match="not a rate point"):
        resolve(None, 7)


def test_names_and_families(family: Path) -> None:
    assert resolve(f"{DEFAULT_FAMILY}-q1").shipped.quality == 1
    assert resolve(DEFAULT_FAMILY).shipped.quality == DEFAULT_QUALITY
    assert resolve(DEFAULT_FAMILY, 1).shipped.name == f"{DEFAULT_FAMILY}-q1"
    assert family_point(DEFAULT_FAMILY, 1).name == f"{DEFAULT_FAMILY}-q1"
    with pytest.raises(ConfigError, match="is one model") as e:
        resolve(f"{DEFAULT_FAMILY}-q1", 3)
    assert f"--model {DEFAULT_FAMILY} --quality 3" in str(e.value)


def test_an_existing_folder_wins(family: Path, trained_run: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    shutil.copytree(trained_run, tmp_path / DEFAULT_FAMILY)
    chosen = resolve(DEFAULT_FAMILY)
    assert chosen.shipped is None and chosen.path == Path(DEFAULT_FAMILY)
    with pytest.raises(ConfigError, match="is a run folder"):
        resolve(DEFAULT_FAMILY, 2)
    assert resolve(str(trained_run)).path == trained_run


def test_unknown_names_suggest_the_shipped_ones(family: Path) -> None:
    with pytest.raises(ConfigError) as e:
        resolve("entropyy")
    assert "--model 'entropyy' is neither a folder nor a shipped model" in e.value.message
    assert "did you mean 'entropy'" in e.value.hint and f"{DEFAULT_FAMILY}-q1" in e.value.hint
    assert "or a run folder from `codec build`" in e.value.hint
    assert "--run 'x'" in resolve_error("x", option="--run")
    # A path is left to load_run, which says what is wrong with it (missing, not a run, …).
    assert resolve("runs/nope").path == Path("runs/nope")


def resolve_error(value: str, **kw: str) -> str:
    with pytest.raises(ConfigError) as e:
        resolve(value, **kw)  # type: ignore[arg-type]
    return e.value.message


def test_without_shipped_models(shipped: Path) -> None:
    with pytest.raises(RunError, match="ships no default model"):
        resolve(None)
    assert "no models are shipped" in resolve_error("entropy")
    assert load_index() == []


def test_damaged_weights_are_refused(family: Path) -> None:
    weights = family / f"{DEFAULT_FAMILY}-q1" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(RunError, match="is damaged: its weights' SHA-256"):
        resolve(f"{DEFAULT_FAMILY}-q1")
    weights.unlink()
    with pytest.raises(RunError, match="has no weights"):
        verify(family_point(DEFAULT_FAMILY, 1))
    assert resolve(None).shipped is not None  # the other points still work


def test_a_malformed_index_is_one_clear_error(shipped: Path) -> None:
    (shipped / "models.json").write_text("{not json")
    with pytest.raises(RunError, match="is unreadable"):
        load_index()
    (shipped / "models.json").write_text(json.dumps({"format": 1, "models": [{"name": "x"}]}))
    with pytest.raises(RunError, match="malformed model entry"):
        load_index()
    (shipped / "models.json").write_text(json.dumps({"format": 99, "models": []}))
    with pytest.raises(RunError, match="upgrade codec-lab"):
        load_index()


def test_files_find_their_model_by_digest(family: Path, other_run: Path) -> None:
    q1 = family_point(DEFAULT_FAMILY, 1)
    assert by_digest(q1.model_digest) == q1 and by_digest("0" * 16) is None
    assert resolve_for_file(None, q1.model_digest, "a.cdl").shipped == q1
    # A family name picks the member that made the file, whatever its quality.
    assert resolve_for_file(DEFAULT_FAMILY, q1.model_digest, "a.cdl").shipped == q1
    with pytest.raises(RunError, match="none of the shipped models") as e:
        resolve_for_file(None, "0" * 16, "a.cdl")
    assert "--model RUN" in str(e.value)
    assert resolve_for_file(other_run, q1.model_digest, "a.cdl").path == other_run
