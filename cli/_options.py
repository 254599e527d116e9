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

Model = Annotated[str | None, typer.Option(
    "--model", "-m",
    help="A shipped model (`codec models`: a name such as entropy-q3, or a family such as entropy "
         "with --quality) or a run folder from `codec build`; an existing folder wins.")]  # fmt: skip
"""``--model`` of the commands that run a trained codec: a run folder or a shipped model."""

Quality = Annotated[int | None, typer.Option(
    "--quality", "-q",
    help="Rate point of a shipped family, 1..4 (1: smallest file; default 3), as CompressAI's "
         "zoo numbers them. Not with a run folder.")]  # fmt: skip
"""``--quality``: which point of a shipped model family (``codec models``)."""

RequiredModel = Annotated[str, typer.Option(
    "--model", "-m",
    help="A run folder from `codec build`, or a shipped model (`codec models`: a name such as "
         "entropy-q3, or a family such as entropy); an existing folder wins.")]  # fmt: skip
"""``--model`` where a model must be named (``eval``, ``fit-coder``)."""
