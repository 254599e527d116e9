"""``codec plugins``: list, show, check and create plugins.

``codec plugins`` (or ``codec plugins list``) lists every registered component by kind, then
the baselines; ``show NAME`` prints what one declares; ``check NAME`` runs every contract rule
on it; ``new NAME --kind KIND`` writes a working plugin package to start from.

The root app mounts :data:`app` as the ``plugins`` group.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from codec_lab.cli._output import debug, handle_errors, out
from codec_lab.cli._typer import Command, Group
from codec_lab.registry.components import Registry

app = typer.Typer(
    name="plugins",
    cls=Group,
    help="List, show, check and create plugins (bare `codec plugins` lists them).",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

KIND_HELP = "encoder, decoder, quantizer, rate, coder or baseline"


def _print(text: str | Text, **kw: Any) -> None:
    """Plain text: names and messages may hold brackets (``[0, 15)``, ``pillow[avif]``)."""
    out.print(text, markup=False, highlight=False, **kw)


# ---------------------------------------------------------------------------- list
def list_plugins(as_json: bool) -> None:
    """Every registered component by kind, then the baselines, marking unavailable ones."""
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
        table.add_row(i.kind if i.kind != last else "", i.name, i.version, i.source, Text(i.summary))
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
    _print("`codec plugins show NAME` for one's settings, `codec plugins check NAME` to test one, "
           "`codec plugins new NAME --kind KIND` to write your own.")


JSON_OPTION = typer.Option("--json", help="Print JSON.")


@app.callback(invoke_without_command=True)
@handle_errors
def plugins_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """List every registered component by kind, with summary and where it comes from, then
    the baselines (classical codecs), marking those whose library is missing here (in JSON,
    a baseline's "unavailable" is that reason, or null).

    Third-party plugins are found through the `codec.plugins` entry-point group and the
    CODEC_PLUGINS environment variable (comma-separated module names).

    Subcommands: list (the same listing), show NAME, check NAME, new NAME --kind KIND.
    """
    if ctx.invoked_subcommand is None:
        list_plugins(as_json)


@app.command("list", cls=Command)
@handle_errors
def list_cmd(as_json: Annotated[bool, JSON_OPTION] = False) -> None:
    """List every registered component by kind, then the baselines (what bare `codec plugins` prints)."""
    list_plugins(as_json)


# ---------------------------------------------------------------------------- show
def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return "null" if value is None else str(value)


def _show_one(d: dict[str, Any]) -> None:
    _print(Text.assemble((f"{d['kind']} {d['name']!r}", "bold"), f" — {d['summary']}"))
    facts: list[tuple[str, str]] = []

    def fact(key: str, value: Any) -> None:
        facts.append((key, value if isinstance(value, str) else _fmt(value)))

    fact("version", d["version"])
    fact("origin", d["origin"])
    fact("module", f"{d['module']} ({d['class']})")
    if d.get("file"):
        fact("file", d["file"])
    if d.get("doc") and d["doc"] != d["summary"]:
        fact("about", d["doc"])
    kind = d["kind"]
    if kind == "baseline":
        s = d["setting"]
        fact("setting", f"{s['key']}: {s['help']}" if s["help"] else s["key"])
        fact("range", f"{d['range'][0]} … {d['range'][1]}" + (" (larger: smaller files)"
                                                             if d["larger_is_smaller"] else ""))
        fact("sweep", d["sweep"])
        fact("suffix", d["suffix"])
        fact("available", "yes" if d["available"] else f"no: {d['unavailable']}")
        if d.get("library"):
            fact("library", d["library"])
    else:
        for key in ("with_defaults", "features", "min_input_size"):
            if key in d:
                fact(key.replace("_", " "), d[key])
        if d.get("defaults_error"):
            fact("with defaults", f"cannot be built: {d['defaults_error']}")
        if kind == "rate":
            fact("default components", d["default_components"] or "(none: name every part)")
            cols = "; ".join(f"{c['key']} ({c['fmt']}): {c['help']}" if c["help"] else c["key"]
                             for c in d["report_columns"])  # fmt: skip
            fact("report columns", cols or "(none)")
            fact("default sweep", "; ".join(f"{k} = {_fmt(v)}" for k, v in d["sweep"].items())
                 or "(none: give --sweep)")
            if d["train_presets"]:
                fact("train presets", "; ".join(f"{p}: {_fmt(v)}" for p, v in d["train_presets"].items()))
        if kind == "coder":
            fact("fitting", d["fitting"])
            fact("likelihoods", "exact (the coding probabilities)" if d["likelihoods_exact"] else
                 f"an estimate, within {d['likelihood_tolerance']:.0%} of the real bits")  # fmt: skip
            if "default_fit_steps" in d:
                fact("default fit steps", d["default_fit_steps"])
        fact("requires", "; ".join(f"{k}: {' or '.join(v)}" for k, v in d["requires"].items()) or "-")
        fact("presets", "; ".join(f"{p}: {_fmt(v)}" for p, v in d["presets"].items()) or "-")
    width = max(len(k) for k, _ in facts)
    for key, value in facts:
        _print(f"  {key:<{width}}  {value}")
    if kind == "baseline":
        return
    if not d["config"]:
        _print("  config keys: none")
        return
    rows = [("config key", "type", "default", "help")]
    rows += [(k["key"], k["type"], "(required)" if k["required"] else json.dumps(k["default"]), k["help"])
             for k in d["config"]]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        cells = "  ".join(f"{c:<{w}}" for c, w in zip(r[:3], widths, strict=True))
        _print(f"  {cells}  {r[3]}".rstrip())


@app.command("show", cls=Command)
@handle_errors
def show_cmd(
    name: Annotated[str, typer.Argument(
        metavar="NAME", help="A component or baseline name (`codec plugins`).")],
    kind: Annotated[str | None, typer.Option(
        "--kind", "-k", help=f"Show only the one of this kind: {KIND_HELP}.")] = None,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Show what a component or baseline declares: its settings, defaults and where it comes from.

    Summary, version, origin (built-in, dist==version or CODEC_PLUGINS), module, config keys
    (type, default, the docstring's help) and presets; a rate's default components, report
    columns and sweep; a coder's fitting, likelihoods and requirements; a baseline's setting,
    range, sweep and whether it is available here. A name registered under several kinds (an
    encoder and a decoder) shows each; --kind picks one.

    Examples:
      codec plugins show admm
      codec plugins show cae --kind decoder
    """
    from codec_lab.registry.plugin_info import describe, find

    registry = Registry()
    described = [describe(registry, info) for info in find(registry, name, kind)]
    if as_json:
        out.print_json(json.dumps(described))
        return
    for i, d in enumerate(described):
        if i:
            _print("")
        _show_one(d)


# ---------------------------------------------------------------------------- check
MARK = {"passed": "✓", "failed": "✗", "skipped": "–"}


def _print_report(report: Any) -> None:
    _print(Text.assemble((report.label, "bold"), f"  {report.module}"))
    for r in report.results:
        line = Text(f"  {MARK[r.status]} {r.rule}", style={"passed": "green", "failed": "red"}.get(r.status))
        if r.status == "skipped":
            line.append(f" (skipped: {r.message})", style="dim")
        _print(line)
        if r.status == "failed":
            _print(f"      {report.label}: {r.message}")
            if r.hint:
                _print(f"      → {r.hint}")
            if r.trace and debug():
                print(r.trace, file=sys.stderr)
    c = report.counts()
    _print(f"  {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped")


@app.command("check", cls=Command)
@handle_errors
def check_cmd(
    names: Annotated[list[str], typer.Argument(
        metavar="NAME...", help="Component or baseline names (`codec plugins`).")],
    kind: Annotated[str | None, typer.Option(
        "--kind", "-k", help=f"Check only the ones of this kind: {KIND_HELP}.")] = None,
    fresh_process: Annotated[bool, typer.Option(
        "--fresh-process/--no-fresh-process",
        help="Also build each by name in a fresh Python process and compare what it codes "
             "(determinism, state kept in the state dict).")] = True,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Run every contract rule on installed components and report each, ✓ or ✗.

    Rules: construction with defaults; shapes and dtypes; alphabet and mask rules; bit-exact
    round trips (also under perturbations); causality and honest likelihoods for coders; a
    rate's decoder side and default composition; a baseline's files and sizes; state-dict
    round trip; determinism in a fresh process. Kinds that need partners get them: a rate
    its default quantizer, a coder the streams of the rate it requires (or two test streams),
    a decoder the same-named encoder's latent. Every rule runs, whatever fails; the exit status
    is non-zero when any rule failed.

    Examples:
      codec plugins check my-rate
      codec plugins check cae --kind decoder
    """
    from codec_lab.registry.plugin_check import ContractCheckFailed, check, find

    registry = Registry()
    infos = [info for name in dict.fromkeys(names) for info in find(registry, name, kind)]
    reports = check(registry, infos, fresh_process=fresh_process)
    if as_json:
        out.print_json(json.dumps([r.as_dict() for r in reports]))
    else:
        for i, report in enumerate(reports):
            if i:
                _print("")
            _print_report(report)
    broken = [r for r in reports if not r.ok]
    if broken:
        what = "; ".join(f"{r.label}: {len(r.failed)} of {len(r.results)} rules failed "
                         f"({', '.join(x.rule for x in r.failed)})" for r in broken)  # fmt: skip
        raise ContractCheckFailed(what, "fix what the ✗ lines say, then run `codec plugins check` again")


# ---------------------------------------------------------------------------- new
@app.command("new", cls=Command)
@handle_errors
def new_cmd(
    name: Annotated[str, typer.Argument(
        metavar="NAME", help="The plugin's name: lowercase kebab-case, e.g. my-rate.")],
    kind: Annotated[str, typer.Option("--kind", "-k", help=f"What to write: {KIND_HELP}.")],
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder to write the package folder NAME into.")] = Path("."),
) -> None:
    """Write a pip-installable plugin package that already works, to start from.

    DIR/NAME holds pyproject.toml (the `codec.plugins` entry point), the module
    codec_lab_NAME.py (the hook and a minimal real implementation of the contract), a README
    and tests/ running the contract checks. An encoder or decoder comes as a same-named pair.
    Nothing is overwritten.

    Examples:
      codec plugins new my-rate --kind rate
      codec plugins new my-coder --kind coder --out plugins/
    """
    from codec_lab.registry.scaffold import scaffold

    made = scaffold(Registry(), name, kind, out_dir)
    pair = {"encoder": " (with its decoder)", "decoder": " (with its encoder)"}.get(made.kind, "")
    article = "an" if made.kind[0] in "aeiou" else "a"
    _print(f"Wrote {article} {made.kind} plugin{pair}, {made.name!r}, to {made.root}:")
    for f in made.files:
        _print(f"  {f}")
    _print("Next steps:")
    for step in made.next_steps:
        _print(f"  {step}")
    _print(f"Then edit {made.module}.py (README.md says what to change).")
