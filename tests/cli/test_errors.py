"""Every bad input: one-line error, non-zero exit, no traceback, no partial output."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from codec_lab.corelib import images
from codec_lab.corelib.files import encode_image
from codec_lab.registry.runs import load_run
from tests.cli.conftest import assert_clean_failure, codec_command, invoke
from tests.helpers import TINY_SETS, image_tensor


@pytest.fixture
def cdl(cli_run: Path, tmp_path: Path) -> Path:
    """A good compressed file made by the CLI run."""
    path = tmp_path / "good.cdl"
    path.write_bytes(encode_image(load_run(cli_run), image_tensor(48, 40)))
    return path


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*")}


# ---------------------------------------------------------------- config and composition
def test_unknown_component_suggests() -> None:
    err = assert_clean_failure(invoke("build", "--rate", "admn", "--dry-run"), code=2)
    assert "unknown rate 'admn'" in err and "did you mean 'admm'" in err


def test_unknown_component_of_another_kind(tmp_path: Path) -> None:
    result = invoke("build", "--coder", "histogramm", "--out", tmp_path / "run", "--steps", "2")
    assert_clean_failure(result, contains="did you mean 'histogram'", code=2)
    assert not (tmp_path / "run").exists()


def test_unknown_config_key(tmp_path: Path) -> None:
    result = invoke("build", "--set", "model.rate.kep=1", "--out", tmp_path / "run")
    err = assert_clean_failure(result, contains="unknown key model.rate.kep", code=2)
    assert "did you mean 'keep'" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("item", "words"), [
    ("train.lr=fast", "train.lr: expected float"),
    ("train.crop=60", "train.crop must be a multiple of 8"),
    ("model.rate.grid=diag", "is not one of"),
    ("model.quantizer.bound=0", "bound must be in"),
    ("nokey", "expected key=value"),
    ("trian.lr=1", "did you mean 'train'"),
])  # fmt: skip
def test_bad_set_values(item: str, words: str) -> None:
    assert_clean_failure(invoke("build", "--dry-run", "--set", item), contains=words, code=2)


def test_wrong_type_in_a_yaml_config(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("train:\n  lr: fast\n")
    result = invoke("build", "--config", tmp_path / "c.yaml", "--out", tmp_path / "run")
    assert_clean_failure(result, contains="train.lr: expected float, got str 'fast'", code=2)
    assert _files(tmp_path) == {"c.yaml"}


def _invalid_yaml(tmp_path: Path):
    (tmp_path / "c.yaml").write_text("train: {lr: [\n")
    return invoke("build", "--config", tmp_path / "c.yaml", "--out", tmp_path / "run")


def test_invalid_yaml(tmp_path: Path) -> None:
    result = _invalid_yaml(tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: config ") and "is not valid YAML" in result.stderr
    assert "Traceback" not in result.stderr
    assert _files(tmp_path) == {"c.yaml"}


def test_invalid_yaml_is_a_one_line_error(tmp_path: Path) -> None:
    assert_clean_failure(_invalid_yaml(tmp_path), contains="not valid YAML")


def test_missing_config_file(tmp_path: Path) -> None:
    assert_clean_failure(invoke("build", "--dry-run", "--config", tmp_path / "nope.yaml"),
                         contains="cannot read config", code=2)  # fmt: skip


def test_yaml_config_that_is_a_list(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("- a\n")
    assert_clean_failure(invoke("build", "--dry-run", "--config", tmp_path / "c.yaml"),
                         contains="top level must be a mapping")  # fmt: skip


def test_set_model_to_a_scalar() -> None:
    assert_clean_failure(invoke("build", "--dry-run", "--set", "model=5"), code=2)


def test_crop_too_small_for_the_loss(tmp_path: Path, data_dirs) -> None:
    result = invoke("build", "--steps", "2", "--out", tmp_path / "run", "--data", data_dirs["train"],
                    "--val", data_dirs["val"], *TINY_SETS, "--set", "train.crop=32")  # fmt: skip
    assert_clean_failure(result, contains="crop")


def test_data_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke("build", "--data", tmp_path / "empty", "--out", tmp_path / "run", *TINY_SETS)
    assert_clean_failure(result, contains="no images in")
    assert not (tmp_path / "run").exists()


def test_build_into_a_used_folder(tmp_path: Path, data_dirs) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("keep")
    result = invoke("build", "--out", tmp_path / "run", "--data", data_dirs["train"], "--steps", "2",
                    *TINY_SETS)  # fmt: skip
    assert_clean_failure(result, contains="already exists and is not empty")
    assert _files(tmp_path) == {"run", "mine.txt"}


def test_build_out_inside_a_file(tmp_path: Path, data_dirs) -> None:
    (tmp_path / "f").write_text("x")
    result = invoke("build", "--out", tmp_path / "f" / "run", "--data", data_dirs["train"], *TINY_SETS)
    assert_clean_failure(result, contains="cannot create run folder")


def test_broken_plugin_is_a_warning_and_the_rest_works(monkeypatch) -> None:
    monkeypatch.setenv("CODEC_PLUGINS", "no_such_codec_plugin_module")
    result = invoke("plugins")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith('warning: plugin "no_such_codec_plugin_module" (CODEC_PLUGINS) could '
                                    "not be loaded: ModuleNotFoundError")
    assert "admm" in result.stdout


# ---------------------------------------------------------------- images and runs
def test_missing_image(cli_run: Path, tmp_path: Path) -> None:
    result = invoke("compress", tmp_path / "nope.png", "--model", cli_run, "-o", tmp_path / "o.cdl")
    assert_clean_failure(result, contains="does not exist")
    assert _files(tmp_path) == set()


def test_unreadable_image(cli_run: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage" * 10)
    result = invoke("compress", tmp_path / "bad.png", "--model", cli_run, "-o", tmp_path / "o.cdl")
    assert_clean_failure(result, contains="cannot read image")
    assert _files(tmp_path) == {"bad.png"}


def test_image_that_is_a_folder(cli_run: Path, tmp_path: Path) -> None:
    assert_clean_failure(invoke("compress", tmp_path, "--model", cli_run), contains="is a folder")


def test_model_folder_that_is_not_a_run(image_file, tmp_path: Path) -> None:
    img = image_file()
    (tmp_path / "notarun").mkdir()
    result = invoke("compress", img, "--model", tmp_path / "notarun", "-o", tmp_path / "o.cdl")
    assert_clean_failure(result, contains="is not a codec run")
    assert not (tmp_path / "o.cdl").exists()


def test_model_folder_that_does_not_exist(image_file, tmp_path: Path) -> None:
    assert_clean_failure(invoke("compress", image_file(), "--model", tmp_path / "nope"),
                         contains="does not exist")  # fmt: skip


def test_run_with_damaged_weights(cli_run: Path, image_file, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(cli_run, broken)
    (broken / "weights.safetensors").write_bytes(b"\0" * 20)
    assert_clean_failure(invoke("compress", image_file(), "--model", broken, "-o", tmp_path / "o.cdl"),
                         contains="is damaged")  # fmt: skip
    assert not (tmp_path / "o.cdl").exists()


def test_eval_folder_without_images(cli_run: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    result = invoke("eval", "--model", cli_run, "--data", tmp_path / "empty", "--json", tmp_path / "r.json")
    assert_clean_failure(result, contains="no images in")
    assert not (tmp_path / "r.json").exists()


# ---------------------------------------------------------------- compressed files
def test_missing_compressed_file(cli_run: Path, tmp_path: Path) -> None:
    result = invoke("decompress", tmp_path / "nope.cdl", "-m", cli_run, "-o", tmp_path / "o.png")
    assert_clean_failure(result, contains="does not exist")
    assert _files(tmp_path) == set()


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_file(cli_run: Path, cdl: Path, tmp_path: Path, keep: float) -> None:
    data = cdl.read_bytes()
    cdl.write_bytes(data[: int(len(data) * keep)])
    result = invoke("decompress", cdl, "-m", cli_run, "-o", tmp_path / "o.png")
    assert_clean_failure(result, contains="truncated or corrupted")
    assert not (tmp_path / "o.png").exists()


def test_empty_file(cli_run: Path, cdl: Path, tmp_path: Path) -> None:
    cdl.write_bytes(b"")
    assert_clean_failure(invoke("decompress", cdl, "-m", cli_run, "-o", tmp_path / "o.png"),
                         contains="too short")  # fmt: skip


def test_corrupted_file(cli_run: Path, cdl: Path, tmp_path: Path) -> None:
    data = bytearray(cdl.read_bytes())
    data[len(data) // 2] ^= 0x01
    cdl.write_bytes(bytes(data))
    result = invoke("decompress", cdl, "-m", cli_run, "-o", tmp_path / "o.png")
    assert_clean_failure(result, contains="checksum")
    assert not (tmp_path / "o.png").exists()


def test_not_a_compressed_file(cli_run: Path, image_file, tmp_path: Path) -> None:
    img = image_file("photo.png")
    assert_clean_failure(invoke("decompress", img, "-m", cli_run, "-o", tmp_path / "o.png"),
                         contains="not a codec-lab file")  # fmt: skip


def test_file_made_by_another_model(cli_run: Path, trained_run: Path, cdl: Path, tmp_path: Path) -> None:
    result = invoke("decompress", cdl, "-m", trained_run, "-o", tmp_path / "o.png")
    err = assert_clean_failure(result, contains="made by another model")
    assert "--model RUN" in err
    assert not (tmp_path / "o.png").exists()


# ---------------------------------------------------------------- outputs
def test_compress_into_a_missing_folder(cli_run: Path, image_file, tmp_path: Path) -> None:
    img = image_file()
    result = invoke("compress", img, "-m", cli_run, "-o", tmp_path / "no" / "such" / "o.cdl")
    assert_clean_failure(result, contains="does not exist")
    assert _files(tmp_path) == {img.name}


def test_compress_into_a_path_inside_a_file(cli_run: Path, image_file, tmp_path: Path) -> None:
    img = image_file()
    result = invoke("compress", img, "-m", cli_run, "-o", img / "o.cdl")
    assert_clean_failure(result, contains="cannot write")
    assert _files(tmp_path) == {img.name}


def test_decompress_onto_a_folder(cli_run: Path, cdl: Path, tmp_path: Path) -> None:
    (tmp_path / "out.png").mkdir()
    assert_clean_failure(invoke("decompress", cdl, "-m", cli_run, "-o", tmp_path / "out.png"),
                         contains="is a folder")  # fmt: skip
    assert _files(tmp_path) == {"good.cdl", "out.png"}


def test_eval_json_into_a_missing_folder(cli_run: Path, data_dirs, tmp_path: Path) -> None:
    result = invoke("eval", "-m", cli_run, "-d", data_dirs["val"], "--json", tmp_path / "no" / "r.json")
    assert_clean_failure(result, contains="cannot write")
    assert _files(tmp_path) == set()


def test_eval_keep_inside_a_file(cli_run: Path, data_dirs, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    result = invoke("eval", "-m", cli_run, "-d", data_dirs["val"], "--keep", tmp_path / "f" / "k")
    assert_clean_failure(result, contains="cannot")


# ---------------------------------------------------------------- bugs and debugging
def test_internal_errors_are_one_line_too(cli_run: Path, image_file, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("codec_lab.cli.commands.compress.encode_image", boom)
    result = invoke("compress", image_file(), "-m", cli_run)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: internal error: RuntimeError: boom",
        "  → run again with CODEC_DEBUG=1 for the traceback and report it",
    ]


def test_codec_debug_shows_the_traceback(cli_run: Path, image_file, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CODEC_DEBUG", "1")
    result = invoke("compress", tmp_path / "nope.png", "--model", cli_run)
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr and "ImageError" in result.stderr
    assert "Error: image" in result.stderr

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("codec_lab.cli.commands.compress.encode_image", boom)
    result = invoke("compress", image_file(), "-m", cli_run)
    assert "Traceback" in result.stderr and "RuntimeError: boom" in result.stderr


def test_console_script_fails_cleanly_end_to_end(cli_run: Path, cdl: Path, tmp_path: Path) -> None:
    """The real ``codec`` executable: one line on stderr, exit 1, nothing written."""
    data = cdl.read_bytes()
    cdl.write_bytes(data[: len(data) - 3])
    env = {k: v for k, v in os.environ.items() if k not in ("CODEC_DEBUG", "CODEC_PLUGINS")}
    proc = subprocess.run([*codec_command(), "decompress", str(cdl), "--model", str(cli_run),
                           "-o", str(tmp_path / "o.png")],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and "truncated or corrupted" in lines[0], proc.stderr
    assert lines[1:] == ["  → compress the image again"], proc.stderr
    assert not (tmp_path / "o.png").exists()


def test_typer_usage_errors_exit_2() -> None:
    result = invoke("compress")
    assert result.exit_code == 2 and "Traceback" not in result.output



# ---------------------------------------------------------------- large images (issue 13)
def test_image_over_the_pixel_limit(cli_run: Path, image_file, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Our pixel limit, and Pillow's decompression-bomb guard (which follows it), end in one
    line naming the limit and how to raise it; --max-pixels raises it."""
    img = image_file(h=48, w=40)  # 1,920 pixels
    out = tmp_path / "o.cdl"
    err = assert_clean_failure(invoke("compress", img, "-m", cli_run, "-o", out, "--max-pixels", "1000"),
                               contains="48 (1,920 pixels), over the limit of 1,000 pixels")  # fmt: skip
    assert "--max-pixels" in err and "CODEC_MAX_PIXELS" in err
    err = assert_clean_failure(invoke("compress", img, "-m", cli_run, "-o", out,
                                      env={"CODEC_MAX_PIXELS": "900"}),
                               contains="has 1,920 pixels, over the limit of 900 pixels")  # fmt: skip
    assert "DecompressionBomb" not in err
    # A large RGB PNG is read row by row: its size comes from its header, the same refusal.
    monkeypatch.setattr(images, "_ROWS_FROM", 0)
    assert_clean_failure(invoke("compress", img, "-m", cli_run, "-o", out, env={"CODEC_MAX_PIXELS": "900"}),
                         contains="is 40x48 (1,920 pixels), over the limit of 900 pixels")  # fmt: skip
    assert not out.exists()
    assert invoke("compress", img, "-m", cli_run, "-o", out, "--max-pixels", "1920").exit_code == 0


def test_bad_tile_size(cli_run: Path, image_file, tmp_path: Path) -> None:
    err = assert_clean_failure(invoke("compress", image_file(), "-m", cli_run, "-o", tmp_path / "o.cdl",
                                      "--tile", "20"), contains="tile size 20 does not suit this model")
    assert "use 0 (one tile" in err and "multiple of 16" in err
    assert not (tmp_path / "o.cdl").exists()
