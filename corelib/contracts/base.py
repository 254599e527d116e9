"""What every component of every kind declares."""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

if TYPE_CHECKING:
    from codec_lab.corelib.streams import StreamSpec

__all__ = ["NAME_PATTERN", "Component", "ComponentInfo", "ReportColumn", "SetupContext"]

NAME_PATTERN = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
"""A component ``name``: lowercase kebab-case (letters, digits, single hyphens); use fullmatch."""


@dataclass(frozen=True)
class SetupContext:
    """Everything a component may need to set itself up, handed over once by the ``Codec``.

    Attributes:
        latent_channels: the encoder's latent channels C.
        alphabet: the quantizer's alphabet size K (None: unbounded integers).
        downsampling_factor: the encoder's spatial factor f.
        parts: every component by kind (``encoder``, ``quantizer``, ``rate``, ``coder``,
            ``decoder``). Keep references to other parts out of your module tree (store them
            in a plain dict), so their parameters are saved once, under their owner.
        specs: the rate's stream specs, in coding order (empty when the rate itself is set
            up; the coder and decoder see them).
    """

    latent_channels: int
    alphabet: int | None
    downsampling_factor: int
    parts: Mapping[str, Component]
    specs: tuple[StreamSpec, ...] = ()


@dataclass(frozen=True)
class ReportColumn:
    """A scalar a component reports per image and per training step, shown in every table.

    Attributes:
        key: the key in ``RateOutput.info`` (and in result rows, logs and JSON).
        label: column heading.
        fmt: format spec of the value, e.g. ``".3f"``.
        help: one line saying what it measures (shown in legends and docs).
        bounds: the values' possible range, e.g. ``(0.0, 1.0)`` for a fraction: a report's
            confidence interval of the mean is clipped to it (None: unbounded).
    """

    key: str
    label: str
    fmt: str = ".4g"
    help: str = ""
    bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class ComponentInfo:
    """A registered component as the registry and ``codec plugins`` see it
    (``Registry().get(kind, name)``; ``codec_lab.testing.check_info`` checks one).

    Attributes:
        kind: the plugin kind, a key of ``KINDS`` (``"encoder"``, …, ``"coder"``).
        name: the registry key (the class's ``name``).
        summary: one line (the class's ``summary``, or its docstring's first line).
        version: the class's ``version``.
        source: where it came from: ``built-in``, ``dist==version`` (an installed
            distribution's entry point) or ``CODEC_PLUGINS``.
        cls: the component class; ``cls(**config_keys)`` constructs it.
    """

    kind: str
    name: str
    summary: str
    version: str
    source: str
    cls: type[Component]


class Component(nn.Module, abc.ABC):
    """Base of every plugin kind.

    Constructor keyword arguments *are* the component's config keys: their annotations give
    the accepted types, their defaults the default values. The registry validates a config
    section against the signature before constructing, so a wrong key or type is refused
    with the key's path.

    Class attributes:
        kind: the plugin kind (``"encoder"``, ``"decoder"``, ``"quantizer"``, ``"rate"``,
            ``"coder"``), set by each contract; never set it.
        name: registry key, lowercase kebab-case, unique within the kind.
        summary: one line shown by ``codec plugins``.
        version: bumped whenever the component's bitstream or weights layout changes; it is
            written into every compressed file.
        requires: names this component needs for other kinds, e.g.
            ``{"rate": ("entropy",)}``; any other choice is refused at build time.
        presets: this component's settings for each training preset (``quick``, ``cpu``,
            ``paper``), e.g. ``{"cpu": {"channels": 64}}``: ``--preset NAME`` applies them
            when the component is chosen, below ``--config`` and ``--set``.

    Life cycle: the constructor takes the config keys; then the ``Codec`` calls
    :meth:`setup` once with what the component needs from the others. Everything the
    component owns (buffers, sub-modules) must exist after set-up, so that a freshly built
    codec loads any state dict of the same composition.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    version: ClassVar[str] = "0.1"
    requires: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def setup(self, ctx: SetupContext) -> None:
        """Create what depends on the other parts (buffers sized by the latent, references).

        Called exactly once, by the ``Codec``, after every component is constructed and
        :meth:`check_composition` passed. The default does nothing.
        """

    def check_composition(self, parts: Mapping[str, Component]) -> str | None:
        """Say why this component cannot work with ``parts`` (kind → component), or None.

        Called once at build time with every component constructed; override for checks
        that depend on properties rather than names (e.g. "needs a finite alphabet").
        """
        return None

    def extra_state_info(self) -> dict[str, Any]:
        """Small JSON-able facts worth showing in reports (e.g. pruning ratio)."""
        return {}
