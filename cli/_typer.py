"""Typer command classes that show flags as flags in ``--help``.

Typer 0.29 prints a type beside every option, so ``--dry-run`` read ``--dry-run <bool>`` as
if it took a value (and ``--dry-run true`` then failed). A flag takes no value: its type
column stays empty.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup


def _blank_flags(params: list[Any]) -> list[Any]:
    for p in params:
        if getattr(p, "is_flag", False) and getattr(p, "metavar", None) is None:
            p.metavar = ""  # typer shows the metavar in place of the type when one is set
    return params


class Command(TyperCommand):
    """A ``TyperCommand`` whose flags (``--force``, ``--help``…) show no value type."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _blank_flags(super().get_params(ctx))


class Group(TyperGroup):
    """A ``TyperGroup`` whose flags (``--version``, ``--help``) show no value type."""

    command_class = Command

    def get_params(self, ctx: Any) -> list[Any]:
        return _blank_flags(super().get_params(ctx))
