"""Per-kind component lookup: normalised names, no duplicates, "did you mean" for typos."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping

import pluggy

from codec_lab.corelib.config import PRESETS, TrainConfig
from codec_lab.corelib.contracts import KINDS, NAME_PATTERN, Component, ComponentInfo
from codec_lab.corelib.errors import (
    DuplicateComponentError,
    PluginLoadError,
    UnknownComponentError,
    did_you_mean,
)
from codec_lab.corelib.params import schema_of
from codec_lab.registry.manager import make_plugin_manager, plugin_source

TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig))

__all__ = ["HOOKS", "Registry", "normalize"]

HOOKS: dict[str, str] = {
    "encoder": "codec_register_encoders",
    "decoder": "codec_register_decoders",
    "quantizer": "codec_register_quantizers",
    "rate": "codec_register_rates",
    "coder": "codec_register_coders",
}
"""The registration hook of each kind."""


def normalize(name: str) -> str:
    """Case-fold and turn ``_`` into ``-``: ``Inclined_TCAE`` → ``inclined-tcae``."""
    return name.strip().lower().replace("_", "-")


def _check_presets(kind: str, cls: type[Component], plugin: str) -> None:
    """A component's ``presets`` (and a rate's ``train_presets``) name known presets and keys."""
    tables = {"presets": getattr(cls, "presets", {})}
    if kind == "rate":
        tables["train_presets"] = getattr(cls, "train_presets", {})
    for attr, table in tables.items():
        if not isinstance(table, Mapping) or not all(isinstance(v, Mapping) for v in table.values()):
            raise PluginLoadError(f"plugin {plugin!r}: {kind} {cls.name!r}: `{attr}` must map preset "
                                  "names to mappings of settings", "e.g. {'cpu': {'channels': 64}}")
        for preset, settings in table.items():
            if preset not in PRESETS:
                raise PluginLoadError(
                    f"plugin {plugin!r}: {kind} {cls.name!r}: `{attr}` names unknown preset {preset!r}",
                    did_you_mean(str(preset), PRESETS),
                )
            accepted = schema_of(cls) if attr == "presets" else TRAIN_KEYS
            unknown = [k for k in settings if k not in accepted]
            if unknown:
                raise PluginLoadError(
                    f"plugin {plugin!r}: {kind} {cls.name!r}: `{attr}[{preset!r}]` sets unknown "
                    f"key {unknown[0]!r}", did_you_mean(unknown[0], accepted),
                )


class Registry:
    """Every registered component, by kind and name.

    Args:
        pm: a plugin manager (default: a fresh one from :func:`make_plugin_manager`).
    """

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm or make_plugin_manager()
        self._by_kind: dict[str, dict[str, ComponentInfo]] = {k: {} for k in KINDS}
        for kind, hook_name in HOOKS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                source = plugin_source(self.pm, impl.plugin_name)
                for cls in impl.function() or []:
                    self._add(kind, cls, impl.plugin_name, source)

    def _add(self, kind: str, cls: type, plugin: str, source: str) -> None:
        base = KINDS[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginLoadError(
                f"plugin {plugin!r} registered {cls!r} as a {kind}, but it does not subclass "
                f"codec_lab.contracts.{base.__name__}"
            )
        name = cls.name if isinstance(cls.name, str) else ""
        if not NAME_PATTERN.fullmatch(name):
            raise PluginLoadError(
                f"plugin {plugin!r}: {kind} {cls.__name__} needs a lowercase kebab-case `name` "
                f"(letters, digits and single hyphens, e.g. 'inclined-tcae'), got {cls.name!r}"
            )
        if name in self._by_kind[kind]:
            other = self._by_kind[kind][name]
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered twice: by {other.source} ({other.cls.__module__}) "
                f"and by {source} ({cls.__module__})",
                "uninstall one of the two plugins, or rename one component",
            )
        _check_presets(kind, cls, plugin)
        summary = cls.summary or next(iter((cls.__doc__ or "").strip().splitlines()), "")
        self._by_kind[kind][name] = ComponentInfo(
            kind=kind,
            name=name,
            summary=summary,
            version=cls.version,
            source=source,
            cls=cls,
        )

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        """Registered names of ``kind`` matching the fnmatch ``pattern``, sorted."""
        return sorted(n for n in self._by_kind[kind] if fnmatch.fnmatch(n, pattern))

    def get(self, kind: str, name: str | type[Component]) -> ComponentInfo:
        """The component ``name`` of ``kind``; a class is looked up by its ``name``."""
        if kind not in self._by_kind:
            raise UnknownComponentError(f"unknown component kind {kind!r}", did_you_mean(kind, KINDS))
        key = normalize(name if isinstance(name, str) else name.name)
        try:
            return self._by_kind[kind][key]
        except KeyError:
            raise UnknownComponentError(
                f"unknown {kind} {name!r}",
                f"{did_you_mean(key, self._by_kind[kind])}; run `codec plugins` to list them",
            ) from None

    def infos(self) -> list[ComponentInfo]:
        """Every component, grouped by kind in data-path order, then by name."""
        return [self._by_kind[k][n] for k in KINDS for n in sorted(self._by_kind[k])]
