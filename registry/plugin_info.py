"""What ``codec plugins show`` prints: a component or baseline found by name, and its description
(summary, origin, config keys with types, defaults and help, presets, declarations)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

from codec_lab.corelib import testing as T
from codec_lab.corelib.contracts import KINDS, Baseline, BaselineInfo, ComponentInfo
from codec_lab.corelib.errors import UnknownComponentError, did_you_mean
from codec_lab.corelib.params import _type_name, schema_of
from codec_lab.registry.components import Registry, normalize

__all__ = ["ALL_KINDS", "Info", "arg_help", "describe", "find", "label"]

ALL_KINDS: tuple[str, ...] = (*KINDS, "baseline")
"""Every kind a name can be registered under: the five parts of a codec, then baselines."""

Info = ComponentInfo | BaselineInfo


# ---------------------------------------------------------------------------- lookup
def find(registry: Registry, name: str, kind: str | None = None) -> list[Info]:
    """Every registration of ``name`` (one per kind it is registered under), or only the one of
    ``kind``; an unknown name or kind is refused with "did you mean"."""
    if kind is not None:
        kind = normalize(kind)
        if kind not in ALL_KINDS:
            raise UnknownComponentError(f"unknown kind {kind!r}", did_you_mean(kind, ALL_KINDS))
        return [registry.baseline_info(name) if kind == "baseline" else registry.get(kind, name)]
    key = normalize(name)
    found: list[Info] = [registry.get(k, key) for k in KINDS if key in registry.names(k)]
    if key in registry.baseline_names():
        found.append(registry.baseline_info(key))
    if not found:
        every = {n for k in KINDS for n in registry.names(k)} | set(registry.baseline_names())
        raise UnknownComponentError(f"no component or baseline is named {name!r}",
                                    f"{did_you_mean(key, every)}; run `codec plugins` to list them")
    return found


def label(info: Info) -> str:
    """``coder 'histogram' (built-in)``."""
    return f"{info.kind} {info.name!r} ({info.source})"


# ---------------------------------------------------------------------------- describe
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Keyword Args|Keyword Arguments):\s*$")
_ARG = re.compile(r"^\*{0,2}(\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def arg_help(cls: type) -> dict[str, str]:
    """Per-key help from the ``Args:`` section (Google style) of the class's or its
    ``__init__``'s own docstring, then its base classes' (a subclass that keeps its base's
    constructor need not repeat its ``Args:``): ``{key: "one line"}``, the nearest class first."""
    out: dict[str, str] = {}
    docs = [(c.__dict__.get("__doc__"), getattr(c.__dict__.get("__init__"), "__doc__", None))
            for c in cls.__mro__ if c is not object]  # fmt: skip
    for doc in (d for pair in docs for d in pair):
        if not doc:
            continue
        lines = inspect.cleandoc(doc).splitlines()
        inside, indent, current = False, None, None
        for line in lines:
            stripped = line.strip()
            lead = len(line) - len(line.lstrip())
            if _SECTION.match(stripped) and lead == 0:
                inside, indent, current = True, None, None
                continue
            if not inside:
                continue
            if not stripped:
                current = None
                continue
            if lead == 0:  # the next section, or prose
                inside = False
                continue
            m = _ARG.match(stripped)
            if m and (indent is None or lead <= indent):
                indent = lead
                current = m.group(1)
                out.setdefault(current, m.group(3).strip())
            elif current is not None and indent is not None and lead > indent:
                out[current] = f"{out[current]} {stripped}".strip()
    return out


def _jsonable(value: Any) -> Any:
    if value is inspect.Parameter.empty:
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


def _first_paragraph(doc: str | None) -> str:
    text = inspect.cleandoc(doc or "")
    return " ".join(text.split("\n\n")[0].split())


def describe(registry: Registry, info: Info) -> dict[str, Any]:
    """What a component or baseline declares, as JSON-able data (``codec plugins show``)."""
    cls = info.cls
    try:
        where = inspect.getsourcefile(cls)
    except TypeError:
        where = None
    d: dict[str, Any] = {
        "kind": info.kind, "name": info.name, "summary": info.summary, "version": info.version,
        "origin": info.source, "module": cls.__module__, "class": cls.__qualname__, "file": where,
        "doc": _first_paragraph(cls.__doc__),
    }  # fmt: skip
    if info.kind == "baseline":
        b_cls: type[Baseline] = cls  # type: ignore[assignment]
        why = registry.baseline_unavailable(info.name)
        library = None
        if why is None:
            try:
                library = b_cls().library()
            except Exception as e:  # a broken plugin: say so, do not fail the listing
                library = f"library() failed: {type(e).__name__}: {e}"
        d.update({
            "setting": {"key": b_cls.setting.key, "label": b_cls.setting.label, "fmt": b_cls.setting.fmt,
                        "help": b_cls.setting.help},
            "range": [b_cls.low, b_cls.high], "larger_is_smaller": b_cls.larger_is_smaller,
            "sweep": list(b_cls.sweep), "suffix": b_cls.suffix, "available": why is None,
            "unavailable": why, "library": library,
        })  # fmt: skip
        return d
    helps = arg_help(cls)
    d["config"] = [{"key": k, "type": _type_name(tp), "default": _jsonable(default),
                    "required": default is inspect.Parameter.empty, "help": helps.get(k, "")}
                   for k, (tp, default) in schema_of(cls).items()]  # fmt: skip
    d["presets"] = _jsonable(dict(cls.presets))
    d["requires"] = _jsonable(dict(cls.requires))
    if info.kind == "rate":
        d["default_components"] = dict(cls.default_components)
        d["report_columns"] = [{"key": c.key, "label": c.label, "fmt": c.fmt, "help": c.help}
                               for c in cls.report_columns]  # fmt: skip
        d["sweep"] = _jsonable(dict(cls.sweep))
        d["train_presets"] = _jsonable(dict(cls.train_presets))
    elif info.kind == "coder":
        d["fitting"] = cls.fitting
        d["likelihoods_exact"] = cls.likelihoods_exact
        if not cls.likelihoods_exact:
            d["likelihood_tolerance"] = cls.likelihood_tolerance
        if cls.fitting == "trained":
            d["default_fit_steps"] = cls.default_fit_steps
    elif info.kind == "encoder":
        d["features"] = list(cls.features)
        d["min_input_size"] = cls.min_input_size
    if info.kind in ("encoder", "quantizer"):  # what only an instance says: build one with defaults
        try:
            part = T.construct(info)  # type: ignore[arg-type]
        except Exception as e:
            d["defaults_error"] = f"{type(e).__name__}: {e}"
        else:
            attrs = ("latent_channels", "downsampling_factor") if info.kind == "encoder" else \
                ("alphabet_size", "grid_step")  # fmt: skip
            d["with_defaults"] = {a: _jsonable(getattr(part, a, None)) for a in attrs}
    return d
