"""Contract checks for plugin authors: call them from your plugin's own tests.

The same rules ``codec plugins check NAME`` runs on an installed component, one check per
kind; each raises ``ContractViolation`` (an ``AssertionError``) naming the broken rule, what
happened and what to fix::

    from codec_lab.testing import check_coder, check_quantizer
    check_quantizer(MyQuantizer())
    check_coder(MyCoder)

This module is the stable import path; the definitions live in ``codec_lab.corelib.testing``.
"""

from __future__ import annotations

from typing import Any

from codec_lab.corelib.contracts import Component
from codec_lab.corelib.testing import (
    CODER_SPECS,
    ContractViolation,
    check_baseline,
    check_coder,
    check_decoder,
    check_encoder,
    check_info,
    check_quantizer,
    check_rate,
    check_state_dict_round_trip,
    construct,
    features_for,
    photo,
    setup_coder,
    setup_rate,
)

__all__ = [
    "CODER_SPECS",
    "ContractViolation",
    "builtin",
    "check_baseline",
    "check_coder",
    "check_decoder",
    "check_encoder",
    "check_info",
    "check_quantizer",
    "check_rate",
    "check_state_dict_round_trip",
    "construct",
    "features_for",
    "photo",
    "setup_coder",
    "setup_rate",
]


def builtin(kind: str, name: str, **params: Any) -> Component:
    """A built-in component constructed by name, its ``params`` checked as a config section's
    are: e.g. the quantizer a rate is checked with, ``builtin("quantizer", "stochastic", bound=7)``.

    Only codec-lab's own components are looked up (installed plugins are not loaded), so a
    test does not depend on what else is installed.
    """
    from codec_lab.registry.components import Registry
    from codec_lab.registry.manager import make_plugin_manager

    registry = Registry(make_plugin_manager(entry_points=False, extra=()))
    return construct(registry.get(kind, name), params)
