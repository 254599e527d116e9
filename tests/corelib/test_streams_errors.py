"""Streams and the error types."""

from __future__ import annotations

import torch

from codec_lab.corelib.errors import (
    BitstreamError,
    CodecError,
    CompositionError,
    ConfigError,
    UnknownComponentError,
    did_you_mean,
)
from codec_lab.corelib.streams import Stream, StreamSpec


def test_stream_without_mask_sends_everything() -> None:
    s = Stream(StreamSpec("y", 2, 5), torch.arange(8).view(2, 2, 2) % 5)
    assert s.full_mask().all() and s.full_mask().shape == (2, 2, 2)
    assert torch.equal(s.sent(), s.symbols.reshape(-1))


def test_stream_mask_broadcasts() -> None:
    sym = torch.arange(12).view(1, 3, 2, 2)
    mask = torch.tensor([True, False, True]).view(1, 3, 1, 1)
    s = Stream(StreamSpec("y", 3, 12), sym, mask)
    assert s.full_mask().shape == sym.shape and s.full_mask().dtype == torch.bool
    assert s.sent().tolist() == [0, 1, 2, 3, 8, 9, 10, 11]


def test_errors_carry_a_hint() -> None:
    e = ConfigError("bad key", "use another")
    assert str(e) == "bad key (use another)" and e.message == "bad key" and e.hint == "use another"
    assert str(BitstreamError("broken")) == "broken"
    assert ConfigError.exit_code == 2 and CodecError.exit_code == 1
    assert issubclass(UnknownComponentError, ConfigError) and issubclass(CompositionError, ConfigError)


def test_did_you_mean() -> None:
    assert did_you_mean("admn", ["admm", "importance"]) == "did you mean 'admm'? valid: admm, importance"
    assert did_you_mean("zzz", ["b", "a"]) == "valid: a, b"
    assert did_you_mean("x", []) == "valid: (none registered)"
