"""Shared helpers for the benchmarks: the Kodak set, the machine line, tables, progress lines.

Classical codecs, results, tables and RD plots are the package's own
(``codec_lab.corelib.classical``, ``.results``, ``.render``, ``.rdplot``); only what is
specific to benchmarking lives here. Every bpp is the byte length of a real file × 8 / pixels.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from codec_lab.corelib.images import list_images
from codec_lab.corelib.render import Grid, markdown, terminal

__all__ = ["LineProgress", "console", "kodak", "machine", "mean", "print_table"]

console = Console(width=200)  # wide: tables are read from logs too


def kodak(limit: int | None = None) -> list[Path]:
    """Kodak images from ``$CODEC_DATA/kodak`` (default ``../shared/data``)."""
    root = Path(os.environ.get("CODEC_DATA", "../shared/data")) / "kodak"
    images = list_images(root)
    return images[:limit] if limit else images


def machine() -> str:
    """One line naming the machine the numbers come from."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}")  # fmt: skip


def mean(values: Sequence[float]) -> float:
    """Mean, ignoring NaNs."""
    vals = [v for v in values if v == v]
    return sum(vals) / len(vals) if vals else float("nan")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Print a table of ready-made cells and return it as Markdown (for RESULTS.md).

    Results (``Results``) are better drawn with ``codec_lab.corelib.render`` directly; this is
    for tables of other numbers (timings, ratios), drawn by the same renderers.
    """
    grid = Grid(list(columns), [[str(v) for v in r] for r in rows])
    console.print(terminal(grid, title))
    return markdown(grid)


class LineProgress:
    """``codec_lab.corelib.progress.Progress`` as plain lines on stderr (logs stay readable)."""

    def __init__(self, every: int = 4) -> None:
        self.every = every
        self._task, self._total, self._done = "", 0, 0

    def start(self, task: str, total: int) -> None:
        self._task, self._total, self._done = task, total, 0
        print(f"  {task}: {total}", file=sys.stderr, flush=True)

    def advance(self, n: int = 1, **fields: Any) -> None:
        self._done += n
        if self._done % self.every == 0 or self._done == self._total:
            info = "  ".join(f"{k} {v:.4g}" for k, v in fields.items() if isinstance(v, float))
            print(f"  {self._task}: {self._done}/{self._total}  {info}", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def stop(self) -> None:
        pass
