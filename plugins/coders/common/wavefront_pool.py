"""Running :mod:`~codec_lab.plugins.coders.common.wavefront_kernel`: compiling it once per
process, and a step on one thread or on numba's thread pool (the same results either way).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from numba.core import config as numba_config

from codec_lab.corelib.errors import PluginWarning
from codec_lab.plugins.coders.common.wavefront_kernel import OUT, step_kernel, step_kernel_threads

__all__ = ["compile_kernel", "run_step"]

_threads_lock = threading.Lock()
_threads_pid: int | None = None


def run_step(parts: int, *args: object) -> None:
    """One step: :func:`step_kernel` with ``args``, on ``parts`` threads where that is safe,
    else on this one (the same results either way). Numba's thread pool is used by one caller
    at a time (its ``workqueue`` layer aborts on concurrent use) and never in a process forked
    after it started (GNU OpenMP's pool does not survive a fork: numba terminates the child);
    torch's thread count is the same after as before."""
    global _threads_pid
    pid = os.getpid()
    if parts > 1 and _threads_pid in (None, pid) and _threads_lock.acquire(blocking=False):
        torch_threads = torch.get_num_threads()
        try:
            first = _threads_pid is None
            _threads_pid = pid
            with _vectorizing(first):  # the first call compiles it (or loads it from the cache)
                step_kernel_threads(*args, parts)
        finally:
            _threads_lock.release()
            # Numba's OpenMP layer sets the process's OpenMP thread count, which is torch's:
            # put torch's back (its products round differently on another count).
            if torch.get_num_threads() != torch_threads:
                torch.set_num_threads(torch_threads)
    else:
        step_kernel(*args)


_compiled = False


def compile_kernel() -> None:
    """Compile (or load from numba's cache) the kernel once per process, with LLVM's SLP
    vectorizer on (numba leaves it off by default): it packs each output's 16 rows (one row's
    8 outputs in ``row1``) into one vector register. Vectorized or not, every output is the
    same chain of FMAs."""
    global _compiled
    if _compiled:
        return
    if not _in_cache(step_kernel):
        warnings.warn(PluginWarning(
            "tcae, inclined-tcae: compiling the context network's step kernel for this machine, "
            "once (about 25 s; numba keeps it on disk)"), stacklevel=2)  # fmt: skip
    with _vectorizing(True):
        f32, runs, out = np.zeros(64, np.float32), np.zeros(4, np.int64), np.zeros((1, 1, OUT), np.float32)
        table = np.array([[1, 1, 1, 1, 0, 1, -1, 1, -1, -1, 1, 0, 0, 0, -1]], dtype=np.int64)
        step_kernel(f32, f32, runs, f32, table, out, 0, 0, 0, 0, 0, 1, 1, 0, 1)
    _compiled = True


def _in_cache(kernel: object) -> bool:
    """Whether numba's cache holds an index for ``kernel`` (a stale one still recompiles, but
    a missing one always does: the first use on a machine). True when it cannot tell."""
    try:
        return os.path.exists(kernel._cache._cache_file._index_path)  # type: ignore[attr-defined]
    except AttributeError:  # numba's internals moved: no notice rather than a wrong one
        return True


@contextlib.contextmanager
def _vectorizing(on: bool) -> Iterator[None]:
    """Numba's SLP vectorizer on (when ``on``) for what compiles inside (numba leaves it off)."""
    before = numba_config.SLP_VECTORIZE
    if on:
        numba_config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        numba_config.SLP_VECTORIZE = before
