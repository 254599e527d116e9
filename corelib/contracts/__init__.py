"""One abstract contract per plugin kind. Subclass these to write a component."""

from codec_lab.corelib.contracts.base import (
    NAME_PATTERN,
    Component,
    ComponentInfo,
    ReportColumn,
    SetupContext,
)
from codec_lab.corelib.contracts.coder import Context, EntropyCoder, Fitting
from codec_lab.corelib.contracts.decoder import Decoder
from codec_lab.corelib.contracts.encoder import Encoder
from codec_lab.corelib.contracts.quantizer import Quantizer
from codec_lab.corelib.contracts.rate import Rate, RateOutput, TrainContext

KINDS: dict[str, type[Component]] = {
    "encoder": Encoder,
    "decoder": Decoder,
    "quantizer": Quantizer,
    "rate": Rate,
    "coder": EntropyCoder,
}
"""Plugin kinds by the config key that selects them, in data-path order."""

__all__ = [
    "KINDS",
    "NAME_PATTERN",
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
    "TrainContext",
]
