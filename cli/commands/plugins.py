"""``codec plugins``: every registered component, by kind."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from codec_lab.cli._output import handle_errors, out
from codec_lab.registry.components import Registry


@handle_errors
def plugins_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List every registered component by kind, with summary and where it comes from.

    Third-party plugins are found through the `codec.plugins` entry-point group and the
    CODEC_PLUGINS environment variable (comma-separated module names).
    """
    infos = Registry().infos()
    if as_json:
        rows = [{"kind": i.kind, "name": i.name, "version": i.version, "summary": i.summary,
                 "source": i.source, "module": i.cls.__module__} for i in infos]  # fmt: skip
        out.print_json(json.dumps(rows))
        return
    table = Table(title="codec-lab components")
    for col in ("kind", "name", "version", "source", "summary"):
        table.add_column(col)
    last = None
    for i in infos:
        if last is not None and i.kind != last:
            table.add_section()
        table.add_row(i.kind if i.kind != last else "", i.name, i.version, i.source, i.summary)
        last = i.kind
    out.print(table)
