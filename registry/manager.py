"""The plugin manager: built-ins by module name, then entry points, then ``CODEC_PLUGINS``."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import pluggy

from codec_lab.corelib.errors import PluginLoadError, did_you_mean
from codec_lab.registry import hookspecs

__all__ = ["BUILTIN_PLUGINS", "ENTRY_POINT_GROUP", "make_plugin_manager", "plugin_source"]

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

_SOURCES: dict[int, str] = {}


def plugin_source(pm: pluggy.PluginManager, plugin_name: str) -> str:
    """Where a registered plugin came from: ``built-in``, ``dist==version`` or ``CODEC_PLUGINS``."""
    plugin = pm.get_plugin(plugin_name)
    return _SOURCES.get(id(plugin), "unknown") if plugin is not None else "unknown"


def _import(module: str, origin: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except Exception as e:  # a broken plugin must not look like a bug of ours
        raise PluginLoadError(
            f'error importing plugin "{module}" ({origin}): {type(e).__name__}: {e}',
            "fix or uninstall that plugin, or set CODEC_DISABLE_PLUGIN_AUTOLOAD=1",
        ) from e


def _register(pm: pluggy.PluginManager, plugin: object, name: str, source: str) -> None:
    if pm.get_plugin(name) is not None or pm.is_registered(plugin):
        return  # the same module named twice (e.g. entry point and CODEC_PLUGINS)
    _SOURCES[id(plugin)] = source
    hooks = sorted(n for n in dir(hookspecs) if n.startswith("codec_"))
    try:
        pm.register(plugin, name=name)
        pm.check_pending()  # per plugin, so that a misspelled hook names its plugin
    except pluggy.PluginValidationError as e:
        typo = next((h for h in _hook_names(plugin) if h not in hooks), "")
        hint = did_you_mean(typo, hooks) if typo else f"valid hooks: {', '.join(hooks)}"
        raise PluginLoadError(f'plugin "{name}" ({source}) is not valid: {e}', hint) from e


def _hook_names(plugin: object) -> list[str]:
    return [n for n in dir(plugin) if n.startswith("codec_") and callable(getattr(plugin, n, None))]


def make_plugin_manager(
    *, entry_points: bool | None = None, extra: tuple[str, ...] | None = None
) -> pluggy.PluginManager:
    """A fresh plugin manager with every plugin loaded.

    Args:
        entry_points: load the ``codec.plugins`` entry-point group (default: unless
            ``CODEC_DISABLE_PLUGIN_AUTOLOAD=1``).
        extra: more plugin module names (default: the comma-separated ``CODEC_PLUGINS``).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for module in BUILTIN_PLUGINS:
        _register(pm, _import(module, "built-in"), module, "built-in")
    if entry_points is None:
        entry_points = os.environ.get("CODEC_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true")
    if entry_points:
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist
            source = f"{dist.metadata['Name']}=={dist.version}" if dist else f"entry point {ep.name}"
            try:
                plugin = ep.load()
            except Exception as e:
                raise PluginLoadError(
                    f'error loading plugin entry point "{ep.name}" from {source}: '
                    f"{type(e).__name__}: {e}",
                    "fix or uninstall that distribution, or set CODEC_DISABLE_PLUGIN_AUTOLOAD=1",
                ) from e
            _register(pm, plugin, ep.name, source)
    if extra is None:
        extra = tuple(m.strip() for m in os.environ.get("CODEC_PLUGINS", "").split(",") if m.strip())
    if extra:
        with _cwd_importable():
            modules = [_import(module, "CODEC_PLUGINS") for module in extra]
        for module, plugin in zip(extra, modules, strict=True):
            _register(pm, plugin, module, "CODEC_PLUGINS")
    pm.check_pending()
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
