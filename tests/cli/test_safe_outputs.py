"""No command destroys a user's file; output names, permissions and the first CLI details."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codec_lab.cli.app import app, version_text
from codec_lab.corelib.container import FORMAT_VERSION
from tests.cli.conftest import assert_clean_failure, codec_command, invoke
from tests.helpers import TINY_SETS, write_image


@pytest.fixture
def photo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the user's photo in it, as the working directory."""
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "photo.png", 40, 48, seed=3)
    monkeypatch.chdir(folder)
    return folder


def test_compress_then_decompress_in_one_folder_keeps_the_original(cli_run: Path, photo_dir: Path) -> None:
    original = (photo_dir / "photo.png").read_bytes()
    assert invoke("compress", "photo.png", "--model", cli_run).exit_code == 0
    result = invoke("decompress", "photo.png.cdl", "--model", cli_run)
    assert result.exit_code == 0, result.stderr
    assert (photo_dir / "photo.png").read_bytes() == original  # byte for byte
    assert sorted(p.name for p in photo_dir.iterdir()) == ["photo.decoded.png", "photo.png", "photo.png.cdl"]
    assert "photo.decoded.png" in result.stdout


def test_another_image_with_the_same_stem_gets_its_own_file(cli_run: Path, photo_dir: Path) -> None:
    write_image(photo_dir / "photo.jpg", 40, 48, seed=4)
    assert invoke("compress", "photo.png", "--model", cli_run).exit_code == 0
    first = (photo_dir / "photo.png.cdl").read_bytes()
    assert invoke("compress", "photo.jpg", "--model", cli_run).exit_code == 0
    assert (photo_dir / "photo.png.cdl").read_bytes() == first
    assert (photo_dir / "photo.jpg.cdl").is_file()


def test_decompressing_twice_refuses_the_second_time(cli_run: Path, photo_dir: Path) -> None:
    invoke("compress", "photo.png", "--model", cli_run)
    assert invoke("decompress", "photo.png.cdl", "--model", cli_run).exit_code == 0
    err = assert_clean_failure(invoke("decompress", "photo.png.cdl", "--model", cli_run),
                               contains="photo.decoded.png already exists")  # fmt: skip
    assert "--force" in err


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_output_onto_the_input_is_refused_even_with_force(cli_run: Path, photo_dir: Path,
                                                          command: str) -> None:  # fmt: skip
    invoke("compress", "photo.png", "--model", cli_run)
    src = "photo.png" if command == "compress" else "photo.png.cdl"
    before = (photo_dir / src).read_bytes()
    result = invoke(command, src, "--model", cli_run, "-o", src, "--force")
    assert_clean_failure(result, contains="is the input file")
    assert (photo_dir / src).read_bytes() == before


def _writers(cli_run: Path, data_dirs: dict[str, Path], tmp: Path) -> dict[str, tuple[list, Path]]:
    """Each writing command with its output path (the file or folder it must not clobber)."""
    cdl = tmp / "in.cdl"
    if not cdl.exists():
        assert invoke("compress", data_dirs["val"] / "img0.png", "-m", cli_run, "-o", cdl).exit_code == 0
    keep = tmp / "keep"
    return {
        "compress": (["compress", data_dirs["val"] / "img0.png", "-m", cli_run, "-o", tmp / "o.cdl"],
                     tmp / "o.cdl"),
        "decompress": (["decompress", cdl, "-m", cli_run, "-o", tmp / "o.png"], tmp / "o.png"),
        "eval --json": (["eval", "-m", cli_run, "--data", data_dirs["val"], "--json", tmp / "r.json"],
                        tmp / "r.json"),
        "eval --keep": (["eval", "-m", cli_run, "--data", data_dirs["val"], "--keep", keep],
                        keep / "img1.png.decoded.png"),
        "compressai --export": (["compressai", cli_run, "--name", "safe-out", "--export", tmp / "c.pth.tar"],
                                tmp / "c.pth.tar"),
        "build --out": (["build", "--steps", "1", "--out", tmp / "run", "--data", data_dirs["train"],
                         "--val", data_dirs["val"], *TINY_SETS], tmp / "run" / "config.yaml"),
    }  # fmt: skip


@pytest.mark.parametrize("name", ["compress", "decompress", "eval --json", "eval --keep",
                                  "compressai --export", "build --out"])  # fmt: skip
def test_every_writing_command_refuses_an_existing_output_and_overwrites_with_force(
    cli_run: Path, data_dirs, tmp_path: Path, name: str
) -> None:
    args, target = _writers(cli_run, data_dirs, tmp_path)[name]
    if name == "build --out":
        target.parent.mkdir()
    else:
        target.parent.mkdir(exist_ok=True)
    target.write_bytes(b"the user's file")
    err = assert_clean_failure(invoke(*args), contains="already exists")
    assert "--force" in err
    assert target.read_bytes() == b"the user's file"
    result = invoke(*args, "--force")
    assert result.exit_code == 0, result.stderr
    assert target.read_bytes() != b"the user's file"


def test_build_force_replaces_only_a_run_folder(data_dirs, tmp_path: Path) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"precious")
    result = invoke("build", "--steps", "1", "--out", out, "--data", data_dirs["train"], "--force",
                    *TINY_SETS)  # fmt: skip
    assert_clean_failure(result, contains="replaces only run folders")
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg"]


def test_output_files_follow_the_umask(cli_run: Path, photo_dir: Path) -> None:
    old = os.umask(0o027)
    try:
        assert invoke("compress", "photo.png", "--model", cli_run).exit_code == 0
        assert invoke("decompress", "photo.png.cdl", "--model", cli_run).exit_code == 0
    finally:
        os.umask(old)
    for name in ("photo.png.cdl", "photo.decoded.png"):
        assert stat.S_IMODE((photo_dir / name).stat().st_mode) == 0o640, name


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert re.match(r"codec-lab \d+\.\d+\.\d+, compressed-file format \d+ ", result.stdout)
    assert f"format {FORMAT_VERSION}" in result.stdout and result.stdout.strip() == version_text()


def test_no_third_party_import_noise_in_a_fresh_process() -> None:
    """compressai's torch_geometric import warns about torch.jit (torch 2.10+): codec_lab filters
    that one message for every entry point (the CLI, ``python -m`` tools, library use)."""
    code = "import codec_lab.registry.runs, warnings; warnings.warn('still shown', UserWarning)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "torch.jit" not in proc.stderr and "still shown" in proc.stderr  # only that one is filtered


def _commands() -> list[str]:
    return ["", *(c.name for c in app.registered_commands)]


@pytest.mark.parametrize("command", _commands())
def test_help_shows_flags_as_flags(command: str) -> None:
    result = invoke(*([command] if command else []), "--help")
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout, result.stdout
    assert re.search(r"--help +(-h +)?Show this", result.stdout)


def test_help_prose_is_reflowed_and_examples_keep_their_lines() -> None:
    from codec_lab.cli._typer import reflow

    text = "Summary.\n\n    One sentence\n    on two lines.\n\n    Examples:\n      codec a\n      codec b\n"
    assert reflow(text) == "Summary.\n\nOne sentence on two lines.\n\nExamples:\n  codec a\n  codec b"
    result = invoke("fit-coder", "--help", env={"COLUMNS": "80"})
    assert "the coder is fitted the way it declares" in " ".join(result.stdout.split())
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "the way it" not in lines and "declares (counted on whole training images, trained" not in lines


def test_boolean_options_are_flags() -> None:
    result = invoke("build", "--dry-run", "--json", "--rate", "admm")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["config"]["model"]["rate"]["name"] == "admm"


@pytest.mark.parametrize("command", ["compress", "decompress", "eval"])
def test_device_option(cli_run: Path, data_dirs, tmp_path: Path, command: str) -> None:
    args = {"compress": ["compress", data_dirs["val"] / "img0.png", "-o", tmp_path / "a.cdl"],
            "decompress": ["decompress", tmp_path / "a.cdl", "-o", tmp_path / "a.png"],
            "eval": ["eval", "--data", data_dirs["val"]]}[command]  # fmt: skip
    if command == "decompress":
        invoke("compress", data_dirs["val"] / "img0.png", "-m", cli_run, "-o", tmp_path / "a.cdl")
    assert invoke(*args, "-m", cli_run, "--device", "cpu").exit_code == 0
    assert_clean_failure(invoke(*args, "-m", cli_run, "--device", "gpu", "--force"),
                         contains="unknown device 'gpu'")  # fmt: skip
    if not torch.cuda.is_available():
        assert_clean_failure(invoke(*args, "-m", cli_run, "--device", "cuda", "--force"),
                             contains="no CUDA device")  # fmt: skip


def test_threads_option_and_env() -> None:
    before = torch.get_num_threads()
    try:
        assert invoke("--threads", "2", "plugins", "--json").exit_code == 0
        assert torch.get_num_threads() == 2
        assert invoke("plugins", "--json", env={"CODEC_THREADS": "1"}).exit_code == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    result = invoke("--threads", "0", "plugins")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_codec_plugins_imports_from_the_current_folder(tmp_path: Path) -> None:
    """As docs/plugins.md shows: the plugin module lies in the folder the command runs in."""
    (tmp_path / "my_codec_plugin.py").write_text(
        (Path(__file__).parents[1] / "fixtures" / "dummy-plugin" / "codec_lab_dummy_plugin.py")
        .read_text().replace('"ci-sign"', '"cwd-sign"'))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CODEC_DEBUG")}
    env["CODEC_PLUGINS"] = "my_codec_plugin"
    proc = subprocess.run([*codec_command(), "plugins", "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    row = next(r for r in json.loads(proc.stdout) if r["name"] == "cwd-sign")
    assert row["source"] == "CODEC_PLUGINS" and row["module"] == "my_codec_plugin"


def test_a_local_file_cannot_shadow_the_framework(tmp_path: Path) -> None:
    """A stray module in the current folder named like one of ours changes nothing."""
    (tmp_path / "yaml.py").write_text("raise RuntimeError('shadowed')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CODEC_DEBUG")}
    env["CODEC_PLUGINS"] = "codec_lab.plugins.rates.admm"
    proc = subprocess.run([*codec_command(), "plugins", "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def _suggested_eval_folder(stdout: str) -> Path:
    line = next(line for line in stdout.splitlines() if line.strip().startswith("codec eval"))
    return Path(line.split("--data ", 1)[1].strip().strip("'"))


def test_suggested_commands_use_held_out_images_only(tmp_path: Path) -> None:
    """After a build on the built-in samples, the printed eval points at images not trained on."""
    from codec_lab.corelib.data import training_images, validation_images

    result = invoke("build", "--steps", "1", "--out", tmp_path / "run", *TINY_SETS)
    assert result.exit_code == 0, result.stderr
    folder = _suggested_eval_folder(result.stdout)
    evaluated = {p.name for p in folder.iterdir()}
    assert evaluated == {p.name for p in validation_images(None)}
    assert not evaluated & {p.name for p in training_images(None)}
    compress = next(line for line in result.stdout.splitlines() if "codec compress" in line)
    assert str(folder) in compress


def test_suggested_commands_work_as_printed_beside_earlier_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README compresses a held-out sample to ``<stem>.cdl`` first; the build's suggestion
    must not then be refused for that file."""
    import shlex

    from codec_lab.corelib.data import validation_images

    monkeypatch.chdir(tmp_path)
    stem = validation_images(None)[0].stem
    (tmp_path / f"{stem}.cdl").write_bytes(b"the user's earlier file")
    result = invoke("build", "--steps", "1", "--out", tmp_path / "run", *TINY_SETS)
    assert result.exit_code == 0, result.stderr
    for line in result.stdout.splitlines():
        if line.strip().startswith(("codec compress", "codec decompress")):
            step = invoke(*shlex.split(line)[1:])
            assert step.exit_code == 0, (line, step.stderr)
    assert (tmp_path / f"{stem}.cdl").read_bytes() == b"the user's earlier file"
    assert (tmp_path / f"{stem}-run.decoded.png").exists()


def test_suggested_eval_uses_the_val_folder(cli_run: Path, data_dirs) -> None:
    stdout = (cli_run.parent / "build-stdout.txt").read_text()
    assert _suggested_eval_folder(stdout) == data_dirs["val"]


def test_val_equal_to_the_training_folder_gets_a_notice(data_dirs, tmp_path: Path) -> None:
    result = invoke("build", "--steps", "1", "--out", tmp_path / "run", "--data", data_dirs["train"],
                    "--val", data_dirs["train"], *TINY_SETS)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "Notice: --val is the training folder" in result.stderr


def test_a_busy_cpu_is_pointed_out_with_the_remedy(data_dirs, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("codec_lab.cli.commands.build.cpu_busy", lambda: (2.3, 2))
    args = ["build", "--steps", "1", "--data", data_dirs["train"], "--val", data_dirs["val"], *TINY_SETS]
    result = invoke(*args, "--out", tmp_path / "a")
    assert "CPU is already busy (load 2.3 on 2 cores)" in result.stderr and "--threads 1" in result.stderr
    before = torch.get_num_threads()
    try:
        result = invoke("--threads", "1", *args, "--out", tmp_path / "b")
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0 and "CPU is already busy" not in result.stderr  # the user chose
