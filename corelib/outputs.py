"""Writing files safely: atomically, never over an existing file unless asked, with the
permissions the user's umask gives.

Every file the project writes goes through :func:`atomic_output`: the data lands in a
temporary file beside the target, is flushed to disk (fsync) and only then moved into place,
so an interrupted command — or a power cut — leaves either the old file or the new one,
never half of one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from codec_lab.corelib.errors import OutputError

__all__ = ["atomic_output", "check_output", "default_file_mode"]

_OVERWRITE_HINT = "pass --force to overwrite it, or choose another output path"


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:  # Linux ≥ 4.7 shows it; reading it is free of the set-and-restore race below
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode a new file gets from ``open()``: 0o666 less the umask."""
    return 0o666 & ~_umask()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | Path, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Refuse an output path before any work is done, with what to do instead.

    Args:
        path: the file about to be written.
        overwrite: whether the user allowed replacing an existing file.
        inputs: files the command reads; the output may never be one of them, even with
            ``overwrite`` (a user's photo is never replaced by its own lossy decode).

    Returns:
        ``path`` as a ``Path``.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write {target}: folder {parent} does not exist",
                          "create the folder or choose another output path")  # fmt: skip
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a folder", "give a file name")
    for src in inputs:
        if _same_file(target, Path(src)):
            raise OutputError(f"cannot write {target}: it is the input file",
                              "choose another output path (-o)")  # fmt: skip
    if target.exists() and not overwrite:
        raise OutputError(f"{target} already exists",
                          _OVERWRITE_HINT)
    return target


def _publish(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move the finished temporary file into place; without ``overwrite``, never clobber."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # fails if the target appeared meanwhile: no race with a rename
    except FileExistsError as e:
        raise OutputError(f"{target} already exists", _OVERWRITE_HINT) from e
    except OSError:  # file systems without hard links: check, then rename
        if target.exists():
            raise OutputError(f"{target} already exists", _OVERWRITE_HINT) from None
        os.replace(tmp, target)


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to disk: a rename is durable only once both
    the data and the folder entry are (a power cut must not leave an empty checkpoint)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # e.g. folders on Windows cannot be opened; the rename still happened
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (pipes, certain FUSE mounts) refuse fsync; nothing to flush there
    finally:
        os.close(fd)


@contextmanager
def atomic_output(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only on success.

    Args:
        path: the file to write.
        overwrite: replace ``path`` if it exists (keeping its permissions); otherwise an
            existing file is refused with :class:`OutputError` and left untouched.

    The new file gets the permissions ``open()`` would give it (the umask's), not the
    temporary file's 0600.
    """
    target = check_output(path, overwrite)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror}",
                          "choose a writable output path") from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:
            mode = target.stat().st_mode & 0o7777 if target.exists() else default_file_mode()
        except OSError:
            mode = default_file_mode()
        os.chmod(tmp_path, mode)
        _fsync(tmp_path)
        _publish(tmp_path, target, overwrite)
        _fsync(target.parent)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror}",
                          "choose a writable output path") from e
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
