"""Consoles, progress bars and the error wrapper shared by every command."""

from __future__ import annotations

import functools
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from codec_lab.corelib.errors import CodecError, PluginWarning

# Piped or captured output has no terminal width; a wide one keeps result tables whole
# (rich would otherwise squeeze them into 80 columns and cut the numbers).
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", 200)))
"""Results (stdout)."""
err = Console(stderr=True, soft_wrap=True)
"""Progress, notices and errors (stderr)."""

F = TypeVar("F", bound=Callable[..., Any])


def debug() -> bool:
    """Whether ``CODEC_DEBUG=1`` asks for tracebacks."""
    return os.environ.get("CODEC_DEBUG", "") not in ("", "0", "false")


def handle_errors(fn: F) -> F:
    """Turn errors into one line on stderr and a non-zero exit (traceback with CODEC_DEBUG=1)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CodecError as e:
            if debug():
                traceback.print_exc()
            print(f"Error: {e.message}", file=sys.stderr)
            if e.hint:
                print(f"  → {e.hint}", file=sys.stderr)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            print("Interrupted.", file=sys.stderr)
            raise typer.Exit(130) from None
        except typer.Exit:
            raise
        except Exception as e:  # a bug: say so plainly, keep the traceback behind CODEC_DEBUG
            if debug():
                traceback.print_exc()
            from codec_lab.registry.manager import find_culprit

            culprit = find_culprit(e)
            if culprit is None:  # our own code (built-in plugins included)
                print(f"Error: internal error: {type(e).__name__}: {e}", file=sys.stderr)
                print("  → run again with CODEC_DEBUG=1 for the traceback and report it",
                      file=sys.stderr)
                raise typer.Exit(1) from None
            inside = f" (inside {culprit.inside}, which it called)" if culprit.inside else ""
            print(f'Error: plugin "{culprit.plugin}" ({culprit.source}) raised {type(e).__name__} in '
                  f"{culprit.call}{inside}: {e}", file=sys.stderr)
            print("  → report it to the plugin's authors; CODEC_DEBUG=1 shows the traceback",
                  file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


_warned: set[str] = set()


def show_plugin_warnings() -> None:
    """Print each plugin warning once per process on stderr, as ``warning: …`` (others as
    Python prints them)."""
    previous = warnings.showwarning
    if getattr(previous, "_codec_plugins", False):
        return

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if not issubclass(category, PluginWarning):
            previous(message, category, *args, **kwargs)
            return
        text = str(message)
        if text not in _warned:
            _warned.add(text)
            print(f"warning: {text}", file=sys.stderr)

    show._codec_plugins = True  # type: ignore[attr-defined]
    warnings.showwarning = show
    warnings.simplefilter("always", PluginWarning)  # once per text: ``show`` keeps count


class BarProgress:
    """``codec_lab.corelib.progress.Progress`` drawn as a rich progress bar on stderr.

    On a terminal the bar updates live; otherwise (CI, pipes) phases and epoch lines are
    printed as plain lines so logs stay readable.
    """

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task: Any = None
        self._fields = ""

    def start(self, task: str, total: int) -> None:
        self.stop()
        if not err.is_terminal:
            err.print(f"{task}: {total}", highlight=False)
            return
        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=err,
        )  # fmt: skip
        self._bar.start()
        self._task = self._bar.add_task(task, total=total, info="")

    def advance(self, n: int = 1, **fields: Any) -> None:
        if self._bar is None:
            return
        info = "  ".join(
            f"{k.replace('_', ' ')} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in fields.items()
        )
        self._bar.update(self._task, advance=n, info=info)

    def message(self, text: str) -> None:
        (self._bar.console if self._bar else err).print(text, highlight=False)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
