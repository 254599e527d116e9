"""Typed keyword validation: a component's constructor signature is its config schema."""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from codec_lab.corelib.errors import ConfigError, did_you_mean

__all__ = ["check_value", "schema_of", "validate_params"]

_MISSING = inspect.Parameter.empty


def schema_of(target: Callable[..., Any] | type) -> dict[str, tuple[Any, Any]]:
    """``key -> (type, default)`` from a class's ``__init__`` or a dataclass's fields."""
    if dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target)
        out = {}
        for f in dataclasses.fields(target):
            default = f.default if f.default is not dataclasses.MISSING else _MISSING
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = f.default_factory()  # type: ignore[misc]
            out[f.name] = (hints.get(f.name, Any), default)
        return out
    init = target.__init__ if isinstance(target, type) else target
    hints = typing.get_type_hints(init)
    out = {}
    for p in inspect.signature(init).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out[p.name] = (hints.get(p.name, Any), p.default)
    return out


_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def check_value(tp: Any, value: Any, path: str) -> Any:
    """Return ``value`` converted to ``tp`` (int → float only), or raise ConfigError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{path}: {value!r} is not one of {_type_name(tp)}")
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return check_value(arg, value, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp in (str, bool):
        if isinstance(value, tp):
            return value
    elif origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (list, tuple)):
            return list(value)
    elif origin is dict or tp is dict:
        if isinstance(value, dict):
            return value
    else:
        return value
    raise ConfigError(
        f"{path}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}"
    )


def validate_params(
    target: Callable[..., Any] | type, params: Mapping[str, Any], path: str
) -> dict[str, Any]:
    """Check ``params`` against ``target``'s schema; return them completed with defaults."""
    schema = schema_of(target)
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in schema:
            raise ConfigError(f"unknown key {path}.{key}", did_you_mean(key, schema))
        out[key] = check_value(schema[key][0], value, f"{path}.{key}")
    for key, (_, default) in schema.items():
        if key not in out:
            if default is _MISSING:
                raise ConfigError(f"missing key {path}.{key}")
            out[key] = default
    return out
