"""One abstract contract per plugin kind. Subclass these to write a component or a baseline."""

from codec_lab.corelib.contracts.base import (
    NAME_PATTERN,
    Component,
    ComponentInfo,
    ReportColumn,
    SetupContext,
)
from codec_lab.corelib.contracts.baseline import Baseline, BaselineInfo
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
"""Plugin kinds by the config key that selects them, in data-path order: the parts a codec is
composed of. Baselines (classical codecs, :class:`Baseline`) are registered too, but are no
part of a codec and have their own lookup (``Registry.baseline``)."""

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
    "TrainContext",
]
