"""The plugin registry: hookspecs, the plugin manager, component lookup, codec building.

Plugin authors need only ``from registry import hookimpl``.
"""

from registry.hookspecs import hookimpl, hookspec

__all__ = ["hookimpl", "hookspec"]
