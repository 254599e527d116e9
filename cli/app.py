"""The root ``codec`` app: global options, and one module per command."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Annotated

import typer
from typer.main import get_command_name

from codec_lab.cli import _state
from codec_lab.cli._output import handle_errors, out, show_plugin_warnings
from codec_lab.cli._typer import Command, Group
from codec_lab.cli.commands import (
    build,
    compare,
    compress,
    compressai_cmd,
    decompress,
    evaluate,
    fit_coder,
    models,
    plugins,
)

app = typer.Typer(
    name="codec",
    cls=Group,
    help="codec-lab: compose, train and compare learned image codecs from plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version_text() -> str:
    """The package and compressed-file format versions, with the libraries that matter."""
    import compressai
    import torch

    import codec_lab
    from codec_lab.corelib.container import FORMAT_VERSION

    return (f"codec-lab {codec_lab.__version__}, compressed-file format {FORMAT_VERSION} "
            f"(torch {torch.__version__}, compressai {compressai.__version__}, "
            f"Python {platform.python_version()})")  # fmt: skip


def _print_version(value: bool) -> None:
    if value:
        out.print(version_text(), highlight=False)
        raise typer.Exit()


@app.callback()
@handle_errors
def root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the codec-lab and file-format versions and exit.")] = False,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, envvar="CODEC_THREADS",
        help="CPU threads for torch (default: torch's choice, one per core). On a machine "
             "shared with another torch job, 1 avoids oversubscription: beside one, a training "
             "step measured 9.2 s with the default and 2.5 s with 1 on 2 cores "
             "(python -m bench.threads).")] = None,
) -> None:
    """codec-lab: compose, train and compare learned image codecs from plugins."""
    show_plugin_warnings()
    _state.threads = threads
    if threads is not None:
        from codec_lab.corelib.devices import set_threads

        set_threads(threads)


for _name, _fn, _extra in (
    ("build", build.build, {}),
    ("compare", compare.compare, {}),
    ("compress", compress.compress, {}),
    ("decompress", decompress.decompress, {}),
    ("eval", evaluate.evaluate_cmd, {}),
    ("fit-coder", fit_coder.fit_coder, {}),
    ("models", models.models_cmd, {}),
    ("compressai", compressai_cmd.compressai_cmd,
     {"context_settings": {"allow_extra_args": True, "ignore_unknown_options": True}}),
):  # fmt: skip
    app.command(_name, cls=Command, **_extra)(_fn)
app.add_typer(plugins.app, name="plugins")  # list (the default), show, check, new


BUILTIN_COMMANDS: frozenset[str] = frozenset(
    [i.name or get_command_name(i.callback.__name__) for i in app.registered_commands if i.callback]
    + [g.name for g in app.registered_groups if isinstance(g.name, str)]
)
"""The names of codec-lab's own commands: reserved, a plugin cannot take them."""

if TYPE_CHECKING:
    import pluggy


def _name(info: typer.models.CommandInfo | typer.models.TyperInfo) -> str | None:
    if isinstance(info, typer.models.TyperInfo):
        name = info.name if isinstance(info.name, str) else None
        sub = info.typer_instance.info.name if info.typer_instance is not None else None
        return name or (sub if isinstance(sub, str) else None)
    if isinstance(info.name, str):
        return info.name
    return get_command_name(info.callback.__name__) if info.callback is not None else None


def add_plugin_commands(root_app: typer.Typer = app, pm: pluggy.PluginManager | None = None) -> None:
    """Let every plugin's ``codec_register_commands`` add commands to ``root_app``.

    A plugin whose hook raises is left out with a warning, and so is a command (or group)
    whose name is taken, by a built-in command or by an earlier plugin, and a replaced root
    callback. Each added command reports errors as codec-lab's own do.
    """
    from codec_lab.registry.manager import (
        BUILTIN,
        PluginProblem,
        make_plugin_manager,
        name_call,
        plugin_source,
        report_problem,
    )

    pm = pm or make_plugin_manager()
    taken = {n: "a built-in command" for n in BUILTIN_COMMANDS}
    taken.update({n: "a built-in command" for n in map(_name, root_app.registered_groups) if n})
    for impl in pm.hook.codec_register_commands.get_hookimpls():
        plugin, source = impl.plugin_name, plugin_source(pm, impl.plugin_name)
        who = f'plugin "{plugin}" ({source})'
        commands, groups = len(root_app.registered_commands), len(root_app.registered_groups)
        callback = root_app.registered_callback
        try:
            impl.function(*[{"app": root_app}[a] for a in impl.argnames])
        except Exception as e:  # one broken plugin does not take the command line down
            del root_app.registered_commands[commands:], root_app.registered_groups[groups:]
            root_app.registered_callback = callback
            if source == BUILTIN:
                raise
            report_problem(pm, PluginProblem(
                plugin, source, f"{who} could not add its commands: codec_register_commands raised "
                f"{type(e).__name__}: {e}; its commands are unavailable",
                "fix or uninstall it, or set CODEC_DISABLE_PLUGIN_AUTOLOAD=1"))
            continue
        if root_app.registered_callback is not callback:
            root_app.registered_callback = callback
            report_problem(pm, PluginProblem(
                plugin, source, f"{who} replaced the codec command's own callback; that is ignored",
                "add commands with app.command() or app.add_typer(), not app.callback()"))
        for registered in (root_app.registered_commands, root_app.registered_groups):
            start = commands if registered is root_app.registered_commands else groups
            kept = []
            for info in registered[start:]:
                name = _name(info)
                if name in taken:
                    report_problem(pm, PluginProblem(
                        plugin, source, f'{who}: its command "{name}" clashes with {taken[name]}; '
                        "it is skipped", "rename the command (built-in command names are reserved)"
                        if taken[name] == "a built-in command" else "rename the command"))
                    continue
                if name:
                    taken[name] = f'a command of plugin "{plugin}" ({source})'
                if isinstance(info, typer.models.CommandInfo) and info.callback is not None:
                    name_call(info.callback, f"command {name!r}")
                    info.callback = handle_errors(info.callback)
                    info.cls = info.cls or Command
                kept.append(info)
            registered[start:] = kept


def main() -> None:
    """Console-script entry point: codec-lab's commands, then the plugins'."""
    show_plugin_warnings()
    try:
        handle_errors(add_plugin_commands)(app)
    except typer.Exit as e:  # a built-in plugin that does not load: the installation is broken
        raise SystemExit(e.exit_code) from None
    app()


if __name__ == "__main__":
    main()
