"""The plugin author's API: one contract per plugin kind and the types they exchange.

Subclass a contract to write a component (or a :class:`Baseline`, a classical codec), register
the class with ``@hookimpl`` (from ``codec_lab``). This module is the stable import path; the
definitions live in ``codec_lab.corelib``.
"""

from codec_lab.corelib.contracts import (
    KINDS,
    NAME_PATTERN,
    Baseline,
    BaselineInfo,
    Component,
    ComponentInfo,
    Context,
    Decoder,
    Encoder,
    EntropyCoder,
    Fitting,
    Quantizer,
    Rate,
    RateOutput,
    ReportColumn,
    SetupContext,
    TrainContext,
)
from codec_lab.corelib.distributed import all_reduce_sum
from codec_lab.corelib.streams import Stream, StreamSpec

__all__ = [
    "KINDS",
    "NAME_PATTERN",
    "Baseline",
    "BaselineInfo",
    "Component",
    "ComponentInfo",
    "Context",
    "Decoder",
    "Encoder",
    "EntropyCoder",
    "Fitting",
    "Quantizer",
    "Rate",
    "RateOutput",
    "ReportColumn",
    "SetupContext",
    "Stream",
    "StreamSpec",
    "TrainContext",
    "all_reduce_sum",
]
