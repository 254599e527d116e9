"""Progress reporting interface (the CLI draws bars; library users may pass their own)."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["NullProgress", "Progress"]


class Progress(Protocol):
    """Receives progress of long work (training, fitting, evaluation)."""

    def start(self, task: str, total: int) -> None:
        """A new phase named ``task`` with ``total`` units of work begins."""

    def advance(self, n: int = 1, **fields: Any) -> None:
        """``n`` units are done; ``fields`` are live values to show (loss, bpp, PSNR…)."""

    def message(self, text: str) -> None:
        """A line worth keeping in the log (e.g. an epoch summary)."""

    def stop(self) -> None:
        """The current phase is over."""


class NullProgress:
    """Shows nothing."""

    def start(self, task: str, total: int) -> None:
        pass

    def advance(self, n: int = 1, **fields: Any) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def stop(self) -> None:
        pass
