"""The reusable contract checks (``codec_lab.corelib.testing``) plus small params for our components."""

from __future__ import annotations

from typing import Any

from codec_lab.corelib.contracts import Component, ComponentInfo
from codec_lab.corelib.testing import *  # noqa: F403 -- the tests call every check through this module
from codec_lab.corelib.testing import construct

SMALL_PARAMS: dict[tuple[str, str], dict[str, Any]] = {
    ("encoder", "cae"): {"channels": 8, "blocks": 0, "latent_channels": 4},
    ("decoder", "cae"): {"channels": 8, "blocks": 0, "latent_channels": 4},
    ("encoder", "content-weighted"): {"width": 0.0625, "latent_channels": 4},
    ("decoder", "content-weighted"): {"width": 0.0625, "latent_channels": 4},
    ("encoder", "gdn"): {"channels": 8, "latent_channels": 4},
    ("decoder", "gdn"): {"channels": 8, "latent_channels": 4},
    ("quantizer", "stochastic"): {"bound": 7},
    ("quantizer", "multilevel"): {"latent_channels": 4},
    ("rate", "admm"): {"cell": 32},
    ("rate", "importance"): {"levels": 4},
    ("coder", "tcae"): {"width": 2, "map_width": 4, "res_blocks": 0, "kernel": 3},
    ("coder", "inclined-tcae"): {"width": 2, "map_width": 4, "res_blocks": 1},
}
"""Small constructor params for known components; unknown ones are built with defaults."""


def small(info: ComponentInfo) -> Component:
    """The component with small params (defaults for components we do not know)."""
    return construct(info, SMALL_PARAMS.get((info.kind, info.name), {}))
