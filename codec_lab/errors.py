"""Errors a component raises for its user: each says what is wrong and what to do instead.

The stable import path for plugin authors; the definitions live in ``codec_lab.corelib.errors``.
"""

from codec_lab.corelib.errors import (
    BitstreamError,
    CodecError,
    CompositionError,
    ConfigError,
    DataError,
    ImageError,
    did_you_mean,
)

__all__ = [
    "BitstreamError",
    "CodecError",
    "CompositionError",
    "ConfigError",
    "DataError",
    "ImageError",
    "did_you_mean",
]
