"""Typed errors. Every error says what is wrong and, in ``hint``, what to do instead.

The CLI maps :class:`CodecError` to a one-line message and a non-zero exit code; anything
else is a bug and shows a traceback only with ``CODEC_DEBUG=1``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "BitstreamError",
    "CodecError",
    "CompositionError",
    "ConfigError",
    "ConfigMismatchError",
    "DataError",
    "DuplicateComponentError",
    "ImageError",
    "OutputError",
    "PluginError",
    "PluginLoadError",
    "PluginWarning",
    "RunError",
    "UnknownComponentError",
    "did_you_mean",
]


class CodecError(Exception):
    """Base class of all errors a user can cause and fix.

    Args:
        message: what is wrong, naming the file, key or component.
        hint: what to do instead (shown after the message).
    """

    exit_code: int = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(CodecError):
    """A config key is unknown, has the wrong type or an out-of-range value."""

    exit_code = 2


class ConfigMismatchError(ConfigError):
    """Weights saved from a codec of one configuration meet a codec of another."""


class UnknownComponentError(ConfigError):
    """A component name is not registered for its kind."""


class DuplicateComponentError(CodecError):
    """Two plugins register the same name for the same kind."""


class CompositionError(ConfigError):
    """The chosen components cannot work together."""


class PluginLoadError(CodecError):
    """A plugin module or entry point failed to import or register."""


class PluginError(CodecError):
    """A plugin's component broke its contract at run time: it returned something of the
    wrong type, dtype or shape, or could not read back what it wrote.

    The message names the call (``coder 'laplace-static'.decode``), where the component comes
    from (``dist==version``, ``built-in`` or ``CODEC_PLUGINS``) and what was wrong; the hint
    says what the component must do instead and whom to tell.

    Args:
        kind, name: the component (``coder``, ``laplace-static``).
        call: the method that misbehaved (``decode``).
        origin: where the component comes from.
        problem: what was wrong, e.g. ``returned float32 symbols; decode must return int64``.
        fix: what the component must do instead.
    """

    def __init__(self, kind: str, name: str, call: str, origin: str, problem: str, fix: str) -> None:
        self.kind, self.name, self.call, self.origin = kind, name, call, origin
        whom = ("a bug of codec-lab: report it" if origin == "built-in"
                else "if you did not write this plugin, report it to its authors")  # fmt: skip
        super().__init__(f"{kind} {name!r}.{call} ({origin}) {problem}", f"{fix}; {whom}")


class PluginWarning(UserWarning):
    """A plugin was skipped, or registers nothing: the rest works without it; or a plugin
    tells of a one-time cost (e.g. compiling for this machine on first use).

    The ``codec`` command prints each one once on stderr as ``warning: …``.
    """


class ImageError(CodecError):
    """An input image is missing, unreadable or not an image."""


class DataError(CodecError):
    """A data folder is missing or holds no images."""


class RunError(CodecError):
    """A model folder is not a codec run, or its files are damaged."""


class BitstreamError(CodecError):
    """A compressed file is truncated, corrupted, or was made by another model."""


class OutputError(CodecError):
    """An output path cannot be written."""


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """Return a hint naming the closest valid names and listing all of them."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    listing = ", ".join(valid) if valid else "(none registered)"
    if close:
        return f"did you mean {' or '.join(repr(c) for c in close)}? valid: {listing}"
    return f"valid: {listing}"
