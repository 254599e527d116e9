"""``codec plugins check`` (``registry.plugin_check``): every rule runs and a broken plugin is
named with the rule it breaks; ``describe`` (``codec plugins show``) and name lookup."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from codec_lab.corelib.errors import UnknownComponentError
from codec_lab.registry import plugin_check as pc
from codec_lab.registry.components import Registry
from codec_lab.registry.manager import make_plugin_manager
from tests.helpers import write_module

MODULE = "codec_broken_plugins"

BROKEN = '''
"""Deliberately broken components, one broken rule each."""
import random

import numpy as np
import torch
from torch import nn

from codec_lab import hookimpl
from codec_lab.contracts import Baseline, Decoder, Encoder, ReportColumn, Stream
from codec_lab.plugins.baselines.pillow import JPEG
from codec_lab.plugins.coders.histogram import HistogramCoder


class FloatDecode(HistogramCoder):
    """Decodes to float32 symbols."""

    name = "float-decode"
    summary = "decodes float32 symbols"

    def decode(self, data, spec, shape, mask, context=None):
        return super().decode(data, spec, shape, mask, context).float()


class NonCausal(HistogramCoder):
    """Its likelihood of a symbol depends on the symbols left and right of it."""

    name = "non-causal"
    summary = "conditions on both neighbours"

    def likelihoods(self, stream, context=None):
        p = super().likelihoods(stream, context)
        s = stream.symbols
        left = torch.nn.functional.pad(s, (1, 0))[..., :-1]
        right = torch.nn.functional.pad(s, (0, 1))[..., 1:]
        return torch.where(stream.full_mask() & ((left + right) % 2 == 1), p * 0.999, p)


class Lying(HistogramCoder):
    """Claims half the probability mass for every sent symbol."""

    name = "lying"
    summary = "likelihoods unrelated to the file"

    def likelihoods(self, stream, context=None):
        return torch.where(stream.full_mask(), torch.full(stream.symbols.shape, 0.5), 1.0)


class Unseeded(HistogramCoder):
    """Codes through a symbol permutation drawn without a seed and kept out of the state dict."""

    name = "unseeded"
    summary = "a random table outside the state dict"

    def setup(self, ctx):
        super().setup(ctx)
        rng = random.Random()  # no seed: another process draws another table
        self.perm = {}
        for spec in ctx.specs:
            order = list(range(spec.alphabet))
            rng.shuffle(order)
            self.perm[spec.name] = torch.tensor(order)

    def _p(self, stream):
        return Stream(stream.spec, self.perm[stream.spec.name][stream.symbols], stream.mask)

    def max_symbols(self, n_bytes, spec):
        return None  # the histogram's bound assumes its own symbols, not permuted ones

    def fit_observe(self, streams):
        super().fit_observe([self._p(s) for s in streams])

    def likelihoods(self, stream, context=None):
        return super().likelihoods(self._p(stream), context)

    def encode(self, stream, context=None):
        return super().encode(self._p(stream), context)

    def decode(self, data, spec, shape, mask, context=None):
        out = torch.argsort(self.perm[spec.name])[super().decode(data, spec, shape, mask, context)]
        return out if mask is None else torch.where(mask.expand(shape), out, 0)


class HalfUpEncoder(Encoder):
    """Downsamples by 4."""

    name = "half-up"
    summary = "an encoder with factor 4"

    def __init__(self, latent_channels: int = 4) -> None:
        super().__init__()
        self.latent_channels, self.downsampling_factor = latent_channels, 4
        self.net = nn.Conv2d(3, latent_channels, 4, stride=4)

    def forward(self, x):
        return {"y": self.net(x)}


class HalfUpDecoder(Decoder):
    """Upsamples by 2 only: the wrong shape for its encoder."""

    name = "half-up"
    summary = "a decoder that upsamples by 2 for an encoder of factor 4"

    def __init__(self, latent_channels: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(latent_channels, 12, 1), nn.PixelShuffle(2))

    def forward(self, y_hat):
        return self.net(y_hat)


class NoisyEncoder(HalfUpEncoder):
    """Adds unseeded noise in eval mode."""

    name = "noisy"
    summary = "noise in eval mode"

    def forward(self, x):
        return {"y": self.net(x) + torch.randn(1)}


class HalfSize(JPEG):
    """Decodes a half-size image."""

    name = "half-size"
    summary = "decodes half the size"

    def decode(self, data):
        return super().decode(data)[::2, ::2].copy()


@hookimpl
def codec_register_coders():
    return [FloatDecode, NonCausal, Lying, Unseeded]


@hookimpl
def codec_register_encoders():
    return [HalfUpEncoder, NoisyEncoder]


@hookimpl
def codec_register_decoders():
    return [HalfUpDecoder]


@hookimpl
def codec_register_baselines():
    return [HalfSize]
'''


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """The built-ins plus the broken components (their module on ``sys.path``)."""
    write_module(tmp_path, MODULE, BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield Registry(make_plugin_manager(entry_points=False, extra=(MODULE,)))
    sys.modules.pop(MODULE, None)


def _check(registry: Registry, name: str, kind: str | None = None, fresh: bool = False) -> pc.CheckReport:
    (report,) = pc.check(registry, pc.find(registry, name, kind), fresh_process=fresh)
    return report


def _by_rule(report: pc.CheckReport) -> dict[str, pc.RuleResult]:
    return {r.rule: r for r in report.results}


def test_a_float_decode_is_named_with_its_rule_and_every_other_rule_still_runs(broken: Registry) -> None:
    report = _check(broken, "float-decode")
    assert [r.rule for r in report.failed] == ["decode returns int64 symbols of the stream's shape"]
    failure = report.failed[0]
    assert failure.message.startswith('rule "decode returns int64 symbols of the stream\'s shape" failed: '
                                      "decode returned torch.float32")  # fmt: skip
    assert "int64" in failure.hint
    assert report.label == "coder 'float-decode' (CODEC_PLUGINS)"
    # all rules ran: the dtype is checked first, so the round trips report nothing else
    assert report.counts()["passed"] >= 10
    assert _by_rule(report)["bit-exact round trip"].status == "passed"


def test_a_decoder_of_the_wrong_shape(broken: Registry) -> None:
    report = _check(broken, "half-up", "decoder")
    (failure,) = report.failed
    assert failure.rule == "decoder output shape"
    assert "decoder gave (2, 3, 6, 8) for a (2, 4, 3, 4) latent; expected (2, 3, 12, 16)" in failure.message
    assert "downsampling_factor (4)" in failure.hint
    assert _check(broken, "half-up", "encoder").ok  # its encoder is fine


def test_a_non_causal_context_model(broken: Registry) -> None:
    report = _check(broken, "non-causal")
    (failure,) = report.failed
    assert failure.rule == "causal: no symbol's probability depends on itself or on later ones"
    assert "depend on each other in a cycle" in failure.message and "no decoding order" in failure.message
    assert "earlier" in failure.hint


def test_likelihoods_that_lie(broken: Registry) -> None:
    failed = {r.rule: r for r in _check(broken, "lying").failed}
    assert "likelihoods match the coded bits" in failed
    assert "(exact claimed)" in failed["likelihoods match the coded bits"].message
    assert "sum to" in failed["likelihoods sum to at most 1 over the alphabet"].message


def test_eval_noise_is_nondeterminism(broken: Registry) -> None:
    (failure,) = _check(broken, "noisy").failed
    assert failure.rule == "eval-mode encoder is deterministic"


def test_a_baseline_decoding_the_wrong_size(broken: Registry) -> None:
    report = _check(broken, "half-size")
    (failure,) = report.failed
    assert failure.rule == "decode returns (H, W, 3) uint8 of the input size"
    assert "decode returned (24, 32, 3) uint8 for a 48×64 image; expected (48, 64, 3)" in failure.message


def test_a_random_table_outside_the_state_dict_fails_in_a_fresh_process(broken: Registry) -> None:
    """In one process everything agrees; built by name in another, it codes other bytes. A
    sound component checked in the same run passes."""
    reports = pc.check(broken, pc.find(broken, "unseeded") + pc.find(broken, "stochastic"))
    unseeded, stochastic = reports
    (failure,) = unseeded.failed
    assert failure.rule == "deterministic in a fresh process"
    assert "coded the same input differently" in failure.message and "state dict" in failure.hint
    assert stochastic.ok and _by_rule(stochastic)["deterministic in a fresh process"].status == "passed"


def test_a_component_that_cannot_be_built_skips_the_rest(broken: Registry, monkeypatch) -> None:
    info = broken.get("coder", "float-decode")

    def boom(self, momentum: float = 0.99) -> None:
        raise RuntimeError("no model file")

    monkeypatch.setattr(info.cls, "__init__", boom)
    report = _check(broken, "float-decode")
    assert [r.rule for r in report.failed] == ["constructs with its defaults"]
    assert "RuntimeError: no model file" in report.failed[0].message
    assert "raised at codec_broken_plugins.py" not in report.failed[0].message  # patched here: this file
    skipped = [r for r in report.results if r.status == "skipped"]
    assert len(skipped) >= 10 and all("constructs with its defaults" in r.message for r in skipped)


# ---------------------------------------------------------------------------- find / describe
def test_find_every_kind_of_a_name_or_one(registry: Registry) -> None:
    assert [i.kind for i in pc.find(registry, "cae")] == ["encoder", "decoder"]
    assert [i.kind for i in pc.find(registry, "CAE", "decoder")] == ["decoder"]
    assert [i.kind for i in pc.find(registry, "jpeg")] == ["baseline"]


def test_find_an_unknown_name_suggests(registry: Registry) -> None:
    with pytest.raises(UnknownComponentError, match="no component or baseline is named 'tcea'") as e:
        pc.find(registry, "tcea")
    assert "did you mean 'tcae'" in str(e.value.hint)
    with pytest.raises(UnknownComponentError, match="unknown kind 'coders'") as e:
        pc.find(registry, "tcae", "coders")
    assert "did you mean 'coder'" in str(e.value.hint)


def test_describe_a_rate(registry: Registry) -> None:
    d = pc.describe(registry, registry.get("rate", "admm"))
    assert d["origin"] == "built-in" and d["module"] == "codec_lab.plugins.rates.admm"
    keys = {k["key"]: k for k in d["config"]}
    assert keys["keep"]["type"] == "float" and keys["keep"]["default"] == 0.1
    assert keys["keep"]["help"] == "fraction of template positions kept (paper: 0.1)."
    assert keys["grid"]["type"] == "'periodic' | 'tile' | 'channel'"
    assert d["default_components"]["coder"] == "histogram"
    assert [c["key"] for c in d["report_columns"]][:1] == ["kept"]
    assert d["sweep"] == {"keep": [0.05, 0.1, 0.2, 0.4]}
    assert d["presets"]["paper"]["keep"] == 0.1


def test_describe_a_coder_and_a_baseline(registry: Registry) -> None:
    cabac = pc.describe(registry, registry.get("coder", "cabac"))
    assert cabac["fitting"] == "counted" and cabac["likelihoods_exact"] is False
    assert 0 < cabac["likelihood_tolerance"] < 1
    assert pc.describe(registry, registry.get("coder", "factorized"))["requires"] == {"rate": ["entropy"]}
    j2k = pc.describe(registry, registry.baseline_info("jpeg2000"))
    assert j2k["setting"]["key"] == "ratio" and j2k["larger_is_smaller"] is True
    assert j2k["range"] == [1, 2000] and j2k["available"] is True and "OpenJPEG" in j2k["library"]


def test_arg_help_reads_google_style_args() -> None:
    class Documented:
        """A thing.

        Args:
            alpha: the first
                key, on two lines.
            beta (int): the second.

        Returns:
            nothing: not an argument.
        """

        def __init__(self, alpha: float = 1.0, beta: int = 2) -> None:
            """Construct.

            Args:
                gamma: documented on __init__ only.
            """

    assert pc.arg_help(Documented) == {"alpha": "the first key, on two lines.", "beta": "the second.",
                                       "gamma": "documented on __init__ only."}  # fmt: skip

    class Variant(Documented):
        """The same constructor, another order.

        Args:
            beta: documented again, nearer.
        """

    assert pc.arg_help(Variant) == {"beta": "documented again, nearer.",
                                    "alpha": "the first key, on two lines.",
                                    "gamma": "documented on __init__ only."}  # fmt: skip
