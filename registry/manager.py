"""The plugin manager: built-ins by module name, then entry points, then ``CODEC_PLUGINS``.

One broken third-party plugin never takes the others down: a plugin that cannot be imported,
is not valid, or whose hook raises is skipped with a :class:`PluginWarning` (printed once on
stderr by the ``codec`` command) that names it, its source and the fix; the problems stay
on the manager (``pm.problems``) so a later "unknown component" can say which plugin failed.
A built-in plugin that fails is a bug of codec-lab, and an error.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import CodeType, FrameType, ModuleType
from typing import Any

import pluggy

from codec_lab.corelib.errors import PluginLoadError, PluginWarning, did_you_mean
from codec_lab.registry import hookspecs

__all__ = [
    "BUILTIN",
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "Culprit",
    "PluginManager",
    "PluginProblem",
    "find_culprit",
    "make_plugin_manager",
    "name_call",
    "plugin_source",
    "record_plugin_module",
    "report_problem",
]

BUILTIN_PLUGINS: tuple[str, ...] = (
    "codec_lab.plugins.transforms.cae",
    "codec_lab.plugins.transforms.content_weighted",
    "codec_lab.plugins.transforms.gdn",
    "codec_lab.plugins.quantizers.stochastic",
    "codec_lab.plugins.quantizers.multilevel",
    "codec_lab.plugins.quantizers.noise",
    "codec_lab.plugins.rates.admm",
    "codec_lab.plugins.rates.importance",
    "codec_lab.plugins.rates.entropy",
    "codec_lab.plugins.coders.histogram",
    "codec_lab.plugins.coders.factorized",
    "codec_lab.plugins.coders.tcae",
    "codec_lab.plugins.coders.cabac",
    "codec_lab.plugins.baselines.pillow",
)
"""Modules of the built-in plugins, registered exactly as a third-party module would be."""

ENTRY_POINT_GROUP = "codec.plugins"
"""Entry-point group third-party distributions use to provide plugin modules."""

BUILTIN = "built-in"
"""The source of the built-in plugins."""

_SOURCES: dict[int, str] = {}

_OWNERS: dict[str, tuple[str, str]] = {}
"""Module name (or package prefix) -> (plugin name, source) of third-party plugins, for
blaming an exception raised in their code on them (:func:`find_culprit`)."""


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that was skipped (``failed``), or a part of one that was, or one that
    registers nothing.

    Attributes:
        plugin: the plugin's name (entry-point name or module name).
        source: ``dist==version``, ``CODEC_PLUGINS``, ``built-in``, ….
        message: what is wrong, naming the plugin.
        hint: what to do.
        failed: True when the whole plugin is unavailable (it could not be loaded).
        empty: True when it loaded but registers nothing.
    """

    plugin: str
    source: str
    message: str
    hint: str = ""
    failed: bool = False
    empty: bool = False

    def __str__(self) -> str:
        return f"{self.message}\n  → {self.hint}" if self.hint else self.message


class PluginManager(pluggy.PluginManager):
    """pluggy's manager for the ``codec`` project, keeping what went wrong while loading.

    Attributes:
        problems: every plugin problem found, in order (each was also warned about).
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.problems: list[PluginProblem] = []


def report_problem(pm: pluggy.PluginManager, problem: PluginProblem) -> None:
    """Keep ``problem`` on ``pm`` (when it keeps problems) and warn about it."""
    problems = getattr(pm, "problems", None)
    if problems is not None:
        problems.append(problem)
    warnings.warn(PluginWarning(str(problem)), stacklevel=2)


def plugin_source(pm: pluggy.PluginManager, plugin_name: str) -> str:
    """Where a registered plugin came from: ``built-in``, ``dist==version`` or ``CODEC_PLUGINS``."""
    plugin = pm.get_plugin(plugin_name)
    return _SOURCES.get(id(plugin), "unknown") if plugin is not None else "unknown"


def record_plugin_module(module: str, plugin_name: str, source: str) -> None:
    """Remember that code in ``module`` (and its submodules) belongs to a third-party plugin."""
    if module and module != "codec_lab" and not module.startswith("codec_lab.") and source != BUILTIN:
        _OWNERS.setdefault(module, (plugin_name, source))


def _owner(module: str) -> tuple[str, str] | None:
    while module:
        hit = _OWNERS.get(module)
        if hit is not None:
            return hit
        module = module.rpartition(".")[0]
    return None


def _load_failure(name: str, source: str, e: BaseException, what: str = "") -> PluginProblem:
    """A plugin that could not be loaded: skipped, with what to do."""
    if isinstance(e, ModuleNotFoundError) and e.name == name and source == "CODEC_PLUGINS":
        hint = ("check the module name in CODEC_PLUGINS: it is imported from the current folder "
                "or sys.path")  # fmt: skip
    elif source == "CODEC_PLUGINS":
        hint = "fix it, or remove it from CODEC_PLUGINS"
    else:
        hint = "fix or uninstall it, or set CODEC_DISABLE_PLUGIN_AUTOLOAD=1"
    return PluginProblem(name, source, f'plugin "{name}" ({source}) could not be loaded: {what}'
                         f"{type(e).__name__}: {e}; its components are unavailable", hint,
                         failed=True)  # fmt: skip


def _import(module: str) -> ModuleType:
    """A built-in plugin module: failing to import one is a broken installation."""
    try:
        return importlib.import_module(module)
    except Exception as e:
        raise PluginLoadError(f'error importing built-in plugin "{module}": {type(e).__name__}: {e}',
                              "reinstall codec-lab") from e  # fmt: skip


def _register(pm: pluggy.PluginManager, plugin: object, name: str, source: str) -> None:
    if pm.get_plugin(name) is not None or pm.is_registered(plugin):
        return  # the same module named twice (e.g. entry point and CODEC_PLUGINS)
    _SOURCES[id(plugin)] = source
    hooks = sorted(n for n in dir(hookspecs) if n.startswith("codec_"))
    try:
        pm.register(plugin, name=name)
        pm.check_pending()  # per plugin, so that a misspelled hook names its plugin
    except pluggy.PluginValidationError as e:
        if pm.get_plugin(name) is not None:
            pm.unregister(name=name)
        typo = next((h for h in _hook_names(plugin) if h not in hooks), "")
        hint = did_you_mean(typo, hooks) if typo else f"valid hooks: {', '.join(hooks)}"
        message = f'plugin "{name}" ({source}) is not valid: {e}'
        if source == BUILTIN:
            raise PluginLoadError(message, hint) from e
        report_problem(pm, PluginProblem(name, source, f"{message}; it is skipped", hint, failed=True))
        return
    if source == BUILTIN:
        return
    module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
    record_plugin_module(module, name, source)
    if not pm.get_hookcallers(plugin):
        _registers_nothing(pm, plugin, name, source, hooks)


def _registers_nothing(pm: pluggy.PluginManager, plugin: object, name: str, source: str,
                       hooks: list[str]) -> None:  # fmt: skip
    unmarked = _hook_names(plugin)
    if unmarked:
        message = (f'plugin "{name}" ({source}) registers nothing: its functions {", ".join(unmarked)} '
                   "lack @hookimpl")  # fmt: skip
        hint = "mark each with @hookimpl (from codec_lab import hookimpl)"
    else:
        message = f'plugin "{name}" ({source}) registers nothing: it defines no codec_* hook function'
        hint = f"implement a hook marked @hookimpl (from codec_lab import hookimpl): {', '.join(hooks)}"
    report_problem(pm, PluginProblem(name, source, message, hint, empty=True))


def _hook_names(plugin: object) -> list[str]:
    return [n for n in dir(plugin) if n.startswith("codec_") and callable(getattr(plugin, n, None))]


def make_plugin_manager(
    *, entry_points: bool | None = None, extra: tuple[str, ...] | None = None
) -> PluginManager:
    """A fresh plugin manager with every plugin that loads.

    A third-party plugin that fails to import or is not valid is skipped with a warning
    (kept in ``pm.problems``); a built-in one is an error.

    Args:
        entry_points: load the ``codec.plugins`` entry-point group (default: unless
            ``CODEC_DISABLE_PLUGIN_AUTOLOAD=1``).
        extra: more plugin module names (default: the comma-separated ``CODEC_PLUGINS``).
    """
    pm = PluginManager()
    for module in BUILTIN_PLUGINS:
        _register(pm, _import(module), module, BUILTIN)
    if entry_points is None:
        entry_points = os.environ.get("CODEC_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true")
    if entry_points:
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist
            source = f"{dist.metadata['Name']}=={dist.version}" if dist else f"entry point {ep.name}"
            module = ep.value.partition(":")[0].strip()
            # An installed package's code is all its plugin's: its submodules and siblings.
            record_plugin_module(module.partition(".")[0], ep.name, source)
            try:
                plugin = ep.load()
            except Exception as e:
                report_problem(pm, _load_failure(ep.name, source, e))
                continue
            _register(pm, plugin, ep.name, source)
    if extra is None:
        extra = tuple(m.strip() for m in os.environ.get("CODEC_PLUGINS", "").split(",") if m.strip())
    if extra:
        loaded = []
        with _cwd_importable():
            for module in extra:
                record_plugin_module(module, module, "CODEC_PLUGINS")
                try:
                    loaded.append((module, importlib.import_module(module)))
                except Exception as e:
                    report_problem(pm, _load_failure(module, "CODEC_PLUGINS", e))
        for module, plugin in loaded:
            _register(pm, plugin, module, "CODEC_PLUGINS")
    return pm


@contextmanager
def _cwd_importable() -> Iterator[None]:
    """Let ``CODEC_PLUGINS`` name a module in the current folder, as ``python -m`` would.

    The console script's ``sys.path`` lacks the current folder. It goes first while the
    modules are imported (so a local module wins, as with ``python -m``), then moves to the
    end, so that imports a plugin makes later still find its sibling modules but a stray
    file in the folder can never shadow an installed package.
    """
    cwd = os.getcwd()
    if cwd in sys.path or "" in sys.path:
        yield
        return
    sys.path.insert(0, cwd)
    try:
        yield
    finally:
        sys.path.remove(cwd)
        sys.path.append(cwd)


# ---------------------------------------------------------------- blaming an exception


@dataclass(frozen=True)
class Culprit:
    """The third-party plugin an exception was raised in.

    Attributes:
        plugin: its name; source: where it comes from.
        call: what codec-lab had called, e.g. ``coder 'laplace-static'.decode``.
        inside: the module of codec-lab's own the plugin had called when it failed (empty
            when the exception came from the plugin's code or a library it called).
    """

    plugin: str
    source: str
    call: str
    inside: str = ""


_CALLS: dict[CodeType, str] = {}


def name_call(function: Any, text: str) -> None:
    """Name calls of a plugin's ``function`` as ``text`` when blaming it (``command 'hello'``)."""
    code = getattr(function, "__code__", None)
    if isinstance(code, CodeType):
        _CALLS[code] = text


def _module(frame: FrameType) -> str:
    return str(frame.f_globals.get("__name__", ""))


def _ours(module: str) -> bool:
    return module == "codec_lab" or module.startswith("codec_lab.")


def _call(frame: FrameType) -> str:
    """``coder 'x'.decode`` for a component's method, ``module.function`` otherwise."""
    code = frame.f_code
    if code in _CALLS:
        return _CALLS[code]
    this = frame.f_locals.get("self")
    kind = getattr(type(this), "kind", None) if this is not None else None
    name = getattr(type(this), "name", None) if this is not None else None
    if isinstance(kind, str) and isinstance(name, str) and name:
        return f"{kind} {name!r}.{code.co_name}"
    if code.co_name.startswith("codec_") and hasattr(hookspecs, code.co_name):
        return f"hook {code.co_name}"
    qualname = getattr(code, "co_qualname", code.co_name).replace("<locals>.", "")
    return f"{_module(frame)}.{qualname}"


def find_culprit(exc: BaseException) -> Culprit | None:
    """The third-party plugin ``exc`` was raised in, or None (codec-lab's own code, or a
    library called from it: a bug of ours).

    The innermost frame of a plugin's code on the traceback decides; the call named is
    where codec-lab last called into that plugin.
    """
    frames = [f for f, _ in traceback.walk_tb(exc.__traceback__)]
    for i in range(len(frames) - 1, -1, -1):
        owner = _owner(_module(frames[i]))
        if owner is None:
            continue
        entry = i
        for k in range(i - 1, -1, -1):
            module = _module(frames[k])
            if _ours(module):
                break
            if _owner(module) == owner:
                entry = k
        inside = next((_module(f) for f in frames[i + 1:] if _ours(_module(f))), "")
        return Culprit(owner[0], owner[1], _call(frames[entry]), inside)
    return None
