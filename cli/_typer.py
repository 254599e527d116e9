"""Typer command classes that show flags as flags in ``--help``, and prose as prose.

Typer 0.29 prints a type beside every option, so ``--dry-run`` read ``--dry-run <bool>`` as
if it took a value (and ``--dry-run true`` then failed). A flag takes no value: its type
column stays empty. It also keeps a docstring's line breaks, so on a terminal narrower than
the source every line wrapped on its own (a word or two left on a line): prose lines are
joined, and indented lines (examples) keep theirs.
"""

from __future__ import annotations

import inspect
from typing import Any

from typer.core import TyperCommand, TyperGroup


def _blank_flags(params: list[Any]) -> list[Any]:
    for p in params:
        if getattr(p, "is_flag", False) and getattr(p, "metavar", None) is None:
            p.metavar = ""  # typer shows the metavar in place of the type when one is set
    return params


def reflow(text: str | None) -> str | None:
    """``text`` with each paragraph's unindented lines joined into one (indented lines, such as
    examples, and ``\\b`` paragraphs kept as they are)."""
    if not text:
        return text
    paragraphs = []
    for para in inspect.cleandoc(text).split("\n\n"):
        if para.startswith("\b"):
            paragraphs.append(para)
            continue
        lines: list[str] = []
        for line in para.splitlines():
            if lines and line and not line[0].isspace() and not lines[-1][:1].isspace():
                lines[-1] = f"{lines[-1]} {line.strip()}"
            else:
                lines.append(line)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


class Command(TyperCommand):
    """A ``TyperCommand`` whose flags (``--force``, ``--help``…) show no value type."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return _blank_flags(super().get_params(ctx))


class Group(TyperGroup):
    """A ``TyperGroup`` whose flags (``--version``, ``--help``) show no value type."""

    command_class = Command

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return _blank_flags(super().get_params(ctx))
