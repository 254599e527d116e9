"""Writing files: atomic, never over an existing file without overwrite, umask permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from codec_lab.corelib.errors import OutputError
from codec_lab.corelib.outputs import atomic_output, check_output, default_file_mode


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_an_existing_file_is_refused_and_left_intact(tmp_path: Path) -> None:
    target = tmp_path / "photo.png"
    target.write_bytes(b"the user's photo")
    with pytest.raises(OutputError, match="already exists") as e, atomic_output(target) as tmp:
        tmp.write_bytes(b"lossy decode")
    assert "--force" in e.value.hint
    assert target.read_bytes() == b"the user's photo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]  # no temporary left


def test_a_file_that_appears_while_writing_is_not_clobbered(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(OutputError, match="already exists"), atomic_output(target) as tmp:
        tmp.write_bytes(b"ours")
        target.write_bytes(b"someone else's")  # created after the up-front check
    assert target.read_bytes() == b"someone else's"


def test_overwrite_replaces_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    with atomic_output(target, overwrite=True) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o640


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        assert default_file_mode() == 0o666 & ~umask
        with atomic_output(tmp_path / "new.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "new.bin") == 0o666 & ~umask  # not mkstemp's 0600


def test_check_output_refuses_an_input_even_with_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    src.write_bytes(b"x")
    with pytest.raises(OutputError, match="is the input file"):
        check_output(tmp_path / "." / "a.png", overwrite=True, inputs=[src])
    assert check_output(tmp_path / "b.png", inputs=[src]) == tmp_path / "b.png"


def test_check_output_names_the_flag(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(OutputError) as e:
        check_output(tmp_path / "r.json")
    assert "--force" in e.value.hint and str(tmp_path / "r.json") in e.value.message


def test_check_output_refuses_missing_folders_and_folders(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        check_output(tmp_path / "nope" / "x.cdl")
    with pytest.raises(OutputError, match="is a folder"):
        check_output(tmp_path, overwrite=True)
