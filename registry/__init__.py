"""The plugin registry: hookspecs, the plugin manager, component lookup, codec building.

Plugin authors need only ``from codec_lab import hookimpl`` (re-exported here).
"""

from codec_lab.registry.hookspecs import hookimpl, hookspec

__all__ = ["hookimpl", "hookspec"]
