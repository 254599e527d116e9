"""Options several commands share, declared once so their help reads the same everywhere."""

from __future__ import annotations

from typing import Annotated

import typer

Force = Annotated[bool, typer.Option(
    "--force", "-f", help="Overwrite the output if it exists (never an input file).")]  # fmt: skip
"""``--force``: without it, no command replaces an existing file."""

Device = Annotated[str, typer.Option(
    help="Where the networks run: auto (cuda when available), cpu or cuda. Entropy coding "
         "runs on the CPU.")]  # fmt: skip
"""``--device`` of the commands that run a trained codec."""
