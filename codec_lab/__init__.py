"""codec-lab: a plugin framework for learned lossy image compression.

Installed as one namespace: ``codec_lab.corelib`` (contracts, the composed codec, engines),
``codec_lab.plugins`` (built-in components), ``codec_lab.registry`` (plugin manager, lookup,
building) and ``codec_lab.cli`` (the ``codec`` command).

A plugin author needs only::

    from codec_lab import hookimpl
    from codec_lab.contracts import Encoder, Decoder, Quantizer, Rate, EntropyCoder, ...
"""

from __future__ import annotations

import importlib.metadata
import warnings

import pluggy

# Known third-party noise, filtered one by one (every other warning still shows), before
# anything of ours imports torch: compressai imports torch_geometric, whose import-time
# `torch.jit.script` calls warn that torch.jit is deprecated (torch 2.10+). Not the user's code,
# nothing they can change; it printed two lines on every command and tool.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script_method` is deprecated",
                        category=FutureWarning)  # fmt: skip

try:
    __version__ = importlib.metadata.version("codec-lab")
except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
    __version__ = "0.0.0+unknown"

PROJECT = "codec"
"""pluggy project name shared by the hook specifications and implementations."""

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin module's ``codec_*`` functions as hook implementations."""

__all__ = ["PROJECT", "__version__", "hookimpl"]
