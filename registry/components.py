"""Per-kind component lookup: normalised names, no duplicates, "did you mean" for typos.

Baselines (classical codecs) register the same way, through their own hook, and have their
own lookup: they are no part of a composed codec, so they are not among ``KINDS``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping

import pluggy

from codec_lab.corelib.classical import ensure_available
from codec_lab.corelib.config import PRESETS, TrainConfig
from codec_lab.corelib.contracts import (
    KINDS,
    NAME_PATTERN,
    Baseline,
    BaselineInfo,
    Component,
    ComponentInfo,
    ReportColumn,
)
from codec_lab.corelib.errors import (
    CodecError,
    DuplicateComponentError,
    PluginLoadError,
    UnknownComponentError,
    did_you_mean,
)
from codec_lab.corelib.params import schema_of
from codec_lab.registry.manager import (
    BUILTIN,
    PluginProblem,
    make_plugin_manager,
    plugin_source,
    record_plugin_module,
    report_problem,
)

TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig))

__all__ = ["BASELINE_HOOK", "HOOKS", "Registry", "normalize"]

HOOKS: dict[str, str] = {
    "encoder": "codec_register_encoders",
    "decoder": "codec_register_decoders",
    "quantizer": "codec_register_quantizers",
    "rate": "codec_register_rates",
    "coder": "codec_register_coders",
}
"""The registration hook of each kind."""

BASELINE_HOOK = "codec_register_baselines"
"""The registration hook of baselines (classical codecs), kind ``baseline``."""


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


def _check_baseline(cls: type[Baseline], plugin: str) -> None:
    """A baseline declares its setting column, a range and a sweep within it, and a suffix."""
    where = f"plugin {plugin!r}: baseline {cls.name!r}"
    if not isinstance(cls.setting, ReportColumn):
        raise PluginLoadError(f"{where}: `setting` must be a ReportColumn, got {cls.setting!r}",
                              'e.g. ReportColumn("quality", "quality", ".0f", "the encoder\'s quality")')
    try:
        low, high, sweep = float(cls.low), float(cls.high), tuple(float(s) for s in cls.sweep)
    except (TypeError, ValueError):
        raise PluginLoadError(f"{where}: `low`, `high` must be numbers and `sweep` a tuple of numbers") \
            from None
    if not low < high:
        raise PluginLoadError(f"{where}: needs `low` < `high`, got {cls.low!r} and {cls.high!r}")
    if not sweep or not all(low <= s <= high for s in sweep):
        raise PluginLoadError(f"{where}: `sweep` must hold settings within [{cls.low}, {cls.high}], "
                              f"got {cls.sweep!r}")
    if not (isinstance(cls.suffix, str) and cls.suffix.startswith(".") and len(cls.suffix) > 1):
        raise PluginLoadError(f"{where}: `suffix` must be a file suffix with its dot, got {cls.suffix!r}",
                              "e.g. '.jpg'")


class Registry:
    """Every registered component, by kind and name, and every baseline, by name.

    A third-party plugin whose hook raises is skipped whole; a component of one that is not
    valid (wrong base class, bad name, bad presets, a name taken) is skipped alone. Each is
    warned about (a ``PluginWarning``) and kept in :attr:`problems`, with the plugin
    manager's own (plugins that failed to import); asking for a component then says which
    plugin may have provided it. A built-in plugin that breaks these rules is an error.

    Args:
        pm: a plugin manager (default: a fresh one from :func:`make_plugin_manager`).
    """

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm or make_plugin_manager()
        self._by_kind: dict[str, dict[str, ComponentInfo]] = {k: {} for k in KINDS}
        self._baselines: dict[str, BaselineInfo] = {}
        self.problems: list[PluginProblem] = list(getattr(self.pm, "problems", []))
        """Every plugin problem: the manager's (import, validation) and the registry's."""
        self._skipped: dict[tuple[str, str], PluginProblem] = {}
        found: list[tuple[str, str, str, list[type]]] = []
        failed: set[str] = set()
        for kind, hook_name in [*HOOKS.items(), ("baseline", BASELINE_HOOK)]:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                plugin = impl.plugin_name
                if plugin in failed:
                    continue
                source = plugin_source(self.pm, plugin)
                try:
                    classes = impl.function()
                except Exception as e:  # a broken plugin must not take the others down
                    if source == BUILTIN:
                        raise
                    failed.add(plugin)
                    self._problem(PluginProblem(
                        plugin, source, f'plugin "{plugin}" ({source}) could not be loaded: its hook '
                        f"{hook_name} raised {type(e).__name__}: {e}; its components are unavailable",
                        "fix or uninstall it, or set CODEC_DISABLE_PLUGIN_AUTOLOAD=1", failed=True))
                    continue
                if classes is not None and not isinstance(classes, (list, tuple)):
                    example = getattr(classes, "__name__", "MyClass")
                    self._check(plugin, source, PluginLoadError(
                        f"plugin {plugin!r}: hook {hook_name} returned {classes!r}, not a list of "
                        "classes; it is skipped", f"return a list, e.g. [{example}]"))
                    continue
                found.append((plugin, source, kind, list(classes or [])))
        # Built-ins first: a name a third party takes again is the third party's to change.
        for plugin, source, kind, classes in sorted(found, key=lambda f: f[1] != BUILTIN):
            if plugin in failed:
                continue
            for cls in classes:
                try:
                    self._add(kind, cls, plugin, source)
                except CodecError as e:
                    name = getattr(cls, "name", None)
                    self._check(plugin, source, e, (kind, name) if isinstance(name, str) else None)

    def _problem(self, problem: PluginProblem) -> None:
        self.problems.append(problem)
        report_problem(self.pm, problem)

    def _check(self, plugin: str, source: str, e: CodecError,
               component: tuple[str, str] | None = None) -> None:  # fmt: skip
        """A component that is not valid: an error for a built-in, else skipped with a warning."""
        if source == BUILTIN:
            raise e
        message = e.message if e.message.endswith("skipped") else f"{e.message}; it is skipped"
        if not message.startswith("plugin "):
            message = f'plugin "{plugin}" ({source}): {message}'
        problem = PluginProblem(plugin, source, message, e.hint or "")
        if component is not None:
            self._skipped.setdefault((component[0], normalize(component[1])), problem)
        self._problem(problem)

    def _unknown_hint(self, kind: str, key: str, valid: Mapping[str, object]) -> str:
        """"Did you mean", and which plugin could have provided ``key`` had it loaded."""
        hint = f"{did_you_mean(key, valid)}; run `codec plugins` to list them"
        skipped = self._skipped.get((kind, key))
        if skipped is not None:
            return f"{skipped.message.removesuffix('; it is skipped')}, so it was skipped; {hint}"
        failed = list(dict.fromkeys(f'"{p.plugin}"' for p in self.problems if p.failed))
        empty = list(dict.fromkeys(f'"{p.plugin}"' for p in self.problems if p.empty))
        if len(failed) == 1:
            hint += f"; plugin {failed[0]} failed to load; it may provide it"
        elif failed:
            hint += f"; plugins {', '.join(failed)} failed to load; one may provide it"
        if empty:
            hint += (f"; plugin {empty[0]} registers nothing (see its warning)" if len(empty) == 1
                     else f"; plugins {', '.join(empty)} register nothing (see their warnings)")
        return hint

    def _add(self, kind: str, cls: type, plugin: str, source: str) -> None:
        base = Baseline if kind == "baseline" else KINDS[kind]
        table = self._baselines if kind == "baseline" else self._by_kind[kind]
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
        if name in table:
            other = table[name]
            builtin = BUILTIN in (other.source, source) and source != other.source
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered twice: by {other.source} ({other.cls.__module__}) "
                f"and by {source} ({cls.__module__})",
                "rename your component (built-in names are reserved)" if builtin
                else "uninstall one of the two plugins, or rename one component",
            )
        summary = cls.summary or next(iter((cls.__doc__ or "").strip().splitlines()), "")
        if kind == "baseline":
            _check_baseline(cls, plugin)
            if source != "unknown":
                record_plugin_module(cls.__module__, plugin, source)
            table[name] = BaselineInfo(kind=kind, name=name, summary=summary, version=cls.version,
                                       source=source, cls=cls)  # fmt: skip
            return
        _check_presets(kind, cls, plugin)
        if source != "unknown":
            record_plugin_module(cls.__module__, plugin, source)
        table[name] = ComponentInfo(
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
                f"unknown {kind} {name!r}", self._unknown_hint(kind, key, self._by_kind[kind])
            ) from None

    def infos(self) -> list[ComponentInfo]:
        """Every component, grouped by kind in data-path order, then by name."""
        return [self._by_kind[k][n] for k in KINDS for n in sorted(self._by_kind[k])]

    def baseline_names(self, pattern: str = "*") -> list[str]:
        """Registered baseline names matching the fnmatch ``pattern``, sorted (available or not)."""
        return sorted(n for n in self._baselines if fnmatch.fnmatch(n, pattern))

    def baseline_info(self, name: str | type[Baseline]) -> BaselineInfo:
        """The registration of baseline ``name``, available or not; a class is looked up by its
        ``name``."""
        key = normalize(name if isinstance(name, str) else name.name)
        try:
            return self._baselines[key]
        except KeyError:
            raise UnknownComponentError(
                f"unknown baseline {name!r}", self._unknown_hint("baseline", key, self._baselines)
            ) from None

    def baseline(self, name: str | type[Baseline]) -> Baseline:
        """A ready baseline ``name`` (a new instance); refused with its reason (a ``ConfigError``)
        when its library is missing here."""
        info = self.baseline_info(name)
        try:
            baseline = info.cls()
        except Exception as e:  # a broken plugin must not look like a bug of ours
            raise PluginLoadError(
                f"baseline {info.name!r} ({info.source}, {info.cls.__module__}) cannot be constructed: "
                f"{type(e).__name__}: {e}",
                "fix or uninstall that plugin",
            ) from e
        ensure_available(baseline)
        return baseline

    def baseline_unavailable(self, name: str | type[Baseline]) -> str | None:
        """Why baseline ``name`` cannot be used here (its ``unavailable()``), or None when it can;
        a baseline that fails to say is unavailable with that failure."""
        info = self.baseline_info(name)
        try:
            return info.cls().unavailable()
        except Exception as e:  # a broken third-party baseline must not break listing
            return f"{info.cls.__module__}.{info.cls.__name__} failed: {type(e).__name__}: {e}"

    def baseline_infos(self) -> list[BaselineInfo]:
        """Every baseline, available or not, by name (``kind`` is ``"baseline"``)."""
        return [self._baselines[n] for n in sorted(self._baselines)]
