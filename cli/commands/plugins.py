"""``codec plugins``: every registered component, by kind, then the baselines."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from codec_lab.cli._output import handle_errors, out
from codec_lab.registry.components import Registry


@handle_errors
def plugins_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List every registered component by kind, with summary and where it comes from, then
    the baselines (classical codecs), marking those whose library is missing here (in JSON,
    a baseline's "unavailable" is that reason, or null).

    Third-party plugins are found through the `codec.plugins` entry-point group and the
    CODEC_PLUGINS environment variable (comma-separated module names).
    """
    registry = Registry()
    infos = registry.infos()
    baselines = [(b, registry.baseline_unavailable(b.name)) for b in registry.baseline_infos()]
    if as_json:
        rows = [{"kind": i.kind, "name": i.name, "version": i.version, "summary": i.summary,
                 "source": i.source, "module": i.cls.__module__} for i in infos]  # fmt: skip
        rows += [{"kind": b.kind, "name": b.name, "version": b.version, "summary": b.summary,
                  "source": b.source, "module": b.cls.__module__, "unavailable": why}
                 for b, why in baselines]  # fmt: skip
        out.print_json(json.dumps(rows))
        return
    table = Table(title="codec-lab components and baselines")
    for col in ("kind", "name", "version", "source", "summary"):
        table.add_column(col)
    last = None
    for i in infos:
        if last is not None and i.kind != last:
            table.add_section()
        table.add_row(i.kind if i.kind != last else "", i.name, i.version, i.source, i.summary)
        last = i.kind
    for b, why in baselines:
        if last is not None and b.kind != last:
            table.add_section()
        summary = Text(b.summary)
        if why:  # plain text: a reason may hold brackets (``pillow[avif]``)
            summary.append(f" (unavailable: {why})", style="red")
        table.add_row(b.kind if b.kind != last else "", b.name, b.version, b.source, summary)
        last = b.kind
    out.print(table)
