"""Plugin errors are blamed on the plugin, and one broken plugin does not take down the rest.

Run-time contract checks (``PluginError``), the smoke round-trip before training, blaming an
exception on the plugin it was raised in, plugins skipped with a warning, and suggestions
that never name the refused component.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from codec_lab.corelib.errors import BitstreamError, CompositionError, PluginError, PluginWarning
from codec_lab.corelib.streams import Stream, StreamSpec
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec, smoke_test
from codec_lab.registry.manager import find_culprit, make_plugin_manager
from codec_lab.registry.runs import train_run
from tests.conftest import tiny_config
from tests.helpers import TINY_MODEL, image_tensor, write_dist, write_module

BAD_PARTS = '''
"""Components that break their contracts, each in one way."""
import torch

from codec_lab import hookimpl
from codec_lab.contracts import StreamSpec
from codec_lab.corelib.streams import Stream
from codec_lab.plugins.coders.histogram import HistogramCoder
from codec_lab.plugins.rates.admm import ADMMRate
from codec_lab.plugins.transforms.cae import CAEEncoder


class FloatDecode(HistogramCoder):
    name = "float-decode"

    def decode(self, *args, **kwargs):
        return super().decode(*args, **kwargs).float()


class ShapeDecode(HistogramCoder):
    name = "shape-decode"

    def decode(self, *args, **kwargs):
        return super().decode(*args, **kwargs)[:, :-1]


class WrongDecode(HistogramCoder):
    name = "wrong-decode"

    def decode(self, data, spec, shape, mask, context=None):
        return (super().decode(data, spec, shape, mask, context) + 1) % spec.alphabet


class BytearrayEncode(HistogramCoder):
    name = "bytearray-encode"

    def encode(self, stream, context=None):
        return bytearray(super().encode(stream, context))


class RaisingEncode(HistogramCoder):
    name = "raising-encode"

    def encode(self, stream, context=None):
        return _scale(stream)


def _scale(stream):
    raise ValueError("laplace scale must be positive")


class LibraryError(HistogramCoder):
    name = "library-error"

    def encode(self, stream, context=None):
        return torch.cat([])  # raises inside torch


class MisusesOurs(HistogramCoder):
    name = "misuses-ours"

    def encode(self, stream, context=None):
        return Stream(stream.spec, None).full_mask()  # raises inside codec_lab.corelib


class TwinStreams(ADMMRate):
    name = "twin-streams"

    def setup(self, ctx):
        specs = super().setup(ctx)
        return [*specs, *specs]


class ZeroAlphabet(ADMMRate):
    name = "zero-alphabet"

    def setup(self, ctx):
        super().setup(ctx)
        return [StreamSpec("y", ctx.latent_channels, 0)]


class BadMask(ADMMRate):
    name = "bad-mask"

    def decode_mask(self, spec, decoded, latent_hw):
        return torch.ones(spec.channels, latent_hw[0] + 1, 1, dtype=torch.bool)


class IntMask(ADMMRate):
    name = "int-mask"

    def decode_mask(self, spec, decoded, latent_hw):
        return torch.ones(spec.channels, 1, 1, dtype=torch.int64)


class NoY(CAEEncoder):
    name = "no-y"

    def forward(self, x):
        return {"latent": super().forward(x)["y"]}


class HalfY(CAEEncoder):
    name = "half-y"

    def forward(self, x):
        return {"y": super().forward(x)["y"][:, :2]}


@hookimpl
def codec_register_coders():
    return [FloatDecode, ShapeDecode, WrongDecode, BytearrayEncode, RaisingEncode, LibraryError,
            MisusesOurs]


@hookimpl
def codec_register_rates():
    return [TwinStreams, ZeroAlphabet, BadMask, IntMask]


@hookimpl
def codec_register_encoders():
    return [NoY, HalfY]
'''

MODULES = ("pe_bad_parts", "pe_raising_hook", "pe_unmarked", "pe_nothing", "pe_missing_dep", "pe_ep_coder")
ORIGIN = "pe_bad_parts from CODEC_PLUGINS"


@pytest.fixture
def plugins(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``fake_site`` holding the plugin modules of these tests; they are forgotten after."""
    write_module(fake_site, "pe_bad_parts", BAD_PARTS)
    yield fake_site
    for name in MODULES:
        sys.modules.pop(name, None)


@pytest.fixture
def bad(plugins: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("CODEC_PLUGINS", "pe_bad_parts")
    return Registry()


def _codec(registry: Registry, **parts: str):
    model = {**TINY_MODEL, **{k: {**TINY_MODEL[k], "name": v} if k in ("encoder",) else {"name": v}
                              for k, v in parts.items()}}  # fmt: skip
    if "rate" in parts:
        model["rate"]["cell"] = 32
    cfg = assemble_config(registry, config={"model": model})
    torch.manual_seed(0)
    return build_codec(cfg["model"], registry).eval()


def _round_trip(codec) -> None:
    x = image_tensor(32, 32)
    codec.decompress(**codec.compress(x))


# ---------------------------------------------------------------- 1. run-time contract checks
def test_decode_returning_float32_is_a_plugin_error(bad: Registry) -> None:
    """The trial's coder: float32 symbols passed every check (the CRC casts them)."""
    codec = _codec(bad, coder="float-decode")
    with pytest.raises(PluginError) as e:
        _round_trip(codec)
    assert e.value.message == (f"coder 'float-decode'.decode ({ORIGIN}) returned a float32 tensor "
                               "(4, 4, 4) for stream 'y'; decode must return int64 symbols shaped (4, 4, 4)")
    assert e.value.hint == ("return symbols.to(torch.int64); if you did not write this plugin, report "
                            "it to its authors")  # fmt: skip
    assert (e.value.kind, e.value.name, e.value.call) == ("coder", "float-decode", "decode")


def test_decode_returning_a_wrong_shape_is_a_plugin_error(bad: Registry) -> None:
    """The trial's other coder: the wrong shape surfaced as an "internal error" further on."""
    with pytest.raises(PluginError, match=r"coder 'shape-decode'\.decode .* tensor \(4, 3, 4\)") as e:
        _round_trip(_codec(bad, coder="shape-decode"))
    assert "shaped (C, h, w) = (4, 4, 4)" in e.value.hint


def test_encode_must_return_bytes(bad: Registry) -> None:
    with pytest.raises(PluginError, match=r"coder 'bytearray-encode'\.encode .* returned a bytearray") as e:
        _round_trip(_codec(bad, coder="bytearray-encode"))
    assert e.value.hint.startswith("return bytes")


@pytest.mark.parametrize(("rate", "words"), [
    ("twin-streams", "declared stream 'y' twice"),
    ("zero-alphabet", "declared stream 'y' with alphabet=0"),
])  # fmt: skip
def test_a_rates_stream_specs_are_checked_at_build(bad: Registry, rate: str, words: str) -> None:
    with pytest.raises(PluginError, match=rf"rate '{rate}'\.setup \({ORIGIN}\) {words}"):
        _codec(bad, rate=rate)


@pytest.mark.parametrize("rate", ["bad-mask", "int-mask"])
def test_masks_the_decoder_derives_are_checked(bad: Registry, rate: str) -> None:
    codec = _codec(bad, rate=rate)
    with pytest.raises(PluginError, match=rf"rate '{rate}'\.decode_mask .* must be bool and broadcast "
                                          r"to \(4, 4, 4\)"):  # fmt: skip
        _round_trip(codec)


@pytest.mark.parametrize(("encoder", "words"), [
    ("no-y", "returned keys ['latent'] without a \"y\" tensor"),
    ("half-y", "returned \"y\" shaped (1, 2, 4, 4); expected (1, 4, 4, 4)"),
])  # fmt: skip
def test_an_encoders_features_are_checked(bad: Registry, encoder: str, words: str) -> None:
    codec = _codec(bad, encoder=encoder)
    with pytest.raises(PluginError) as e:
        codec(image_tensor(32, 32))
    assert e.value.message.startswith(f"encoder '{encoder}'.forward ({ORIGIN}) ") and words in e.value.message


def test_rate_output_is_checked_against_its_specs(tiny_codec) -> None:
    class Redeclaring(type(tiny_codec.rate)):
        def forward(self, y_tilde, features, quantizer):
            out = super().forward(y_tilde, features, quantizer)
            out.streams = [Stream(StreamSpec("z", 4, 15), s.symbols, s.mask) for s in out.streams]
            return out

    tiny_codec.rate.__class__ = Redeclaring
    with pytest.raises(PluginError, match=r"rate 'admm'\.forward \(built-in\) returned streams \['z'\]; "
                                          r"its setup declared \['y'\]"):  # fmt: skip
        tiny_codec(image_tensor(32, 32))


def test_a_built_in_breaking_its_contract_is_reported_as_ours(registry: Registry) -> None:
    codec = build_codec(tiny_config(registry)["model"], registry).eval()
    decode = codec.coder.decode
    codec.coder.decode = lambda *a, **k: decode(*a, **k).to(torch.int32)  # type: ignore[method-assign]
    with pytest.raises(PluginError) as e:
        _round_trip(codec)
    assert "coder 'histogram'.decode (built-in)" in e.value.message
    assert e.value.hint.endswith("a bug of codec-lab: report it")


def test_built_in_codecs_pass_every_check(tiny_codec) -> None:
    x = image_tensor(40, 48)
    with torch.no_grad():
        ref = tiny_codec(x)["x_hat"].clamp(0, 1)
    assert torch.equal(tiny_codec.decompress(**tiny_codec.compress(x))["x_hat"], ref)


# ---------------------------------------------------------------- 1. the smoke test before training
@pytest.mark.parametrize("coder", ["float-decode", "shape-decode", "bytearray-encode"])
def test_build_fails_before_training_and_leaves_no_run_folder(bad: Registry, tmp_path: Path,
                                                                coder: str) -> None:  # fmt: skip
    cfg = tiny_config(bad, coder={"name": coder})
    out = tmp_path / "run"
    with pytest.raises(PluginError, match=rf"coder '{coder}'\.(de|en)code \({ORIGIN}\)"):
        train_run(cfg, out, bad)
    assert not out.exists()


def test_smoke_test_catches_a_coder_that_does_not_invert_its_encode(bad: Registry) -> None:
    cfg = tiny_config(bad, coder={"name": "wrong-decode"})
    with pytest.raises(PluginError) as e:
        smoke_test(cfg["model"], bad)
    assert e.value.message.startswith(f"coder 'wrong-decode'.decode ({ORIGIN}) could not read back what "
                                      "its encode had just written")
    assert "checksum mismatch" in e.value.message and "decode must invert encode exactly" in e.value.hint
    assert isinstance(e.value.__cause__, BitstreamError)


@pytest.mark.parametrize(("rate", "coder"), [
    ("admm", "histogram"), ("admm", "cabac"), ("entropy", "factorized"), ("importance", "inclined-tcae"),
])  # fmt: skip
def test_smoke_test_passes_built_in_compositions(registry: Registry, rate: str, coder: str) -> None:
    cfg = assemble_config(registry, rate=rate, preset="cpu", components={"coder": coder})
    state = torch.random.get_rng_state()
    smoke_test(cfg["model"], registry)
    assert torch.equal(torch.random.get_rng_state(), state)  # a run's seed reproduces it


# ---------------------------------------------------------------- 2. blaming an exception
def _raised(codec) -> BaseException:
    with pytest.raises(Exception) as e:  # noqa: PT011
        _round_trip(codec)
    return e.value


def test_an_exception_in_a_plugin_is_blamed_on_it(bad: Registry) -> None:
    exc = _raised(_codec(bad, coder="raising-encode"))
    assert isinstance(exc, ValueError)
    culprit = find_culprit(exc)
    assert culprit is not None
    assert (culprit.plugin, culprit.source) == ("pe_bad_parts", "CODEC_PLUGINS")
    assert culprit.call == "coder 'raising-encode'.encode" and culprit.inside == ""


def test_a_library_error_under_a_plugin_is_the_plugins(bad: Registry) -> None:
    culprit = find_culprit(_raised(_codec(bad, coder="library-error")))
    assert culprit is not None and culprit.call == "coder 'library-error'.encode"


def test_our_code_called_by_a_plugin_is_named(bad: Registry) -> None:
    culprit = find_culprit(_raised(_codec(bad, coder="misuses-ours")))
    assert culprit is not None and culprit.plugin == "pe_bad_parts"
    assert culprit.inside == "codec_lab.corelib.streams"


def test_an_installed_plugin_is_named_by_its_distribution(plugins: Path) -> None:
    """An entry-point plugin: its distribution and version name it, in checks and in blame."""
    write_module(plugins, "pe_ep_coder", BAD_PARTS.replace('"float-decode"', '"laplace-static"')
                 .replace('"raising-encode"', '"laplace-raising"'))  # fmt: skip
    write_dist(plugins, "laplace-coder", "1.0", {"laplace": "pe_ep_coder"})
    registry = Registry()
    assert registry.get("coder", "laplace-static").source == "laplace-coder==1.0"
    with pytest.raises(PluginError, match=r"^coder 'laplace-static'\.decode \(pe_ep_coder from "
                                          r"laplace-coder==1\.0\) returned a float32 tensor"):  # fmt: skip
        _round_trip(_codec(registry, coder="laplace-static"))
    culprit = find_culprit(_raised(_codec(registry, coder="laplace-raising")))
    assert culprit is not None
    assert (culprit.plugin, culprit.source, culprit.call) == ("laplace", "laplace-coder==1.0",
                                                              "coder 'laplace-raising'.encode")


def test_our_own_bugs_are_not_blamed_on_plugins(bad: Registry, tiny_codec) -> None:
    tiny_codec.coder.encode = lambda *a, **k: 1 / 0  # type: ignore[method-assign]  # a "built-in" bug
    assert find_culprit(_raised(tiny_codec)) is None


# ---------------------------------------------------------------- 3. modules that register nothing
def test_functions_without_hookimpl_are_warned_about(plugins: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(plugins, "pe_unmarked", "def codec_register_rates():\n    return []\n\n"
                                         "def codec_register_coders():\n    return []\n")
    monkeypatch.setenv("CODEC_PLUGINS", "pe_unmarked")
    with pytest.warns(PluginWarning) as w:
        pm = make_plugin_manager()
    assert [str(x.message) for x in w] == [
        'plugin "pe_unmarked" (CODEC_PLUGINS) registers nothing: its functions codec_register_coders, '
        "codec_register_rates lack @hookimpl\n  → mark each with @hookimpl (from codec_lab import hookimpl)"
    ]
    assert [(p.plugin, p.empty, p.failed) for p in pm.problems] == [("pe_unmarked", True, False)]


def test_a_module_without_hooks_is_warned_about(plugins: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(plugins, "pe_nothing", "X = 1\n")
    monkeypatch.setenv("CODEC_PLUGINS", "pe_nothing")
    with pytest.warns(PluginWarning, match='"pe_nothing" .* registers nothing: it defines no codec_'):
        registry = Registry()
    with pytest.raises(Exception) as e:  # noqa: PT011
        registry.get("rate", "mine")
    assert 'plugin "pe_nothing" registers nothing (see its warning)' in e.value.hint


def test_builtins_register_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Registry().problems == []


# ---------------------------------------------------------------- 4. a broken plugin is skipped
RAISING_HOOK = '''
from codec_lab import hookimpl
from codec_lab.plugins.transforms.cae import CAEEncoder


class Mine(CAEEncoder):
    name = "mine"


@hookimpl
def codec_register_encoders():
    return [Mine]


@hookimpl
def codec_register_rates():
    raise RuntimeError("config file ~/.mine missing")
'''


def test_a_hook_that_raises_skips_its_plugin(plugins: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(plugins, "pe_raising_hook", RAISING_HOOK)
    monkeypatch.setenv("CODEC_PLUGINS", "pe_raising_hook,pe_bad_parts")
    with pytest.warns(PluginWarning) as w:
        registry = Registry()
    assert [str(x.message) for x in w] == [
        'plugin "pe_raising_hook" (CODEC_PLUGINS) could not be loaded: its hook codec_register_rates '
        "raised RuntimeError: config file ~/.mine missing; its components are unavailable\n"
        "  → fix or uninstall it, or set CODEC_DISABLE_PLUGIN_AUTOLOAD=1"
    ]
    assert "mine" not in registry.names("encoder")  # all of it, not the hooks that happened to work
    assert "float-decode" in registry.names("coder") and "admm" in registry.names("rate")
    cfg = assemble_config(registry, rate="admm")  # what does not need it works
    assert cfg["model"]["rate"]["name"] == "admm"
    with pytest.raises(Exception) as e:  # noqa: PT011
        assemble_config(registry, rate="admm", components={"encoder": "mine"})
    assert e.value.message == "unknown encoder 'mine'"
    assert e.value.hint.endswith('plugin "pe_raising_hook" failed to load; it may provide it')


def test_an_import_error_skips_only_that_plugin(plugins: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(plugins, "pe_missing_dep", "import no_such_dependency_xyz\n")
    monkeypatch.setenv("CODEC_PLUGINS", "pe_missing_dep,pe_bad_parts")
    with pytest.warns(PluginWarning, match='"pe_missing_dep" .* ModuleNotFoundError: No module named '
                                           "'no_such_dependency_xyz'"):  # fmt: skip
        registry = Registry()
    assert "float-decode" in registry.names("coder")


# ---------------------------------------------------------------- 6. refused compositions
def test_a_refused_coder_is_not_suggested(registry: Registry) -> None:
    cfg = assemble_config(registry, rate="entropy", components={"coder": "cabac"})
    with pytest.raises(CompositionError) as e:
        build_codec(cfg["model"], registry)
    assert "build the run with --quantizer stochastic or multilevel" in e.value.message
    assert e.value.hint == ("change the part the message names, or keep the other parts and choose "
                            "coder 'factorized'")  # fmt: skip
    assert "cabac" not in e.value.hint


def test_no_alternative_says_so(registry: Registry) -> None:
    cfg = assemble_config(registry, rate="admm", components={"quantizer": "noise"})
    with pytest.raises(CompositionError) as e:
        build_codec(cfg["model"], registry)
    assert e.value.hint == "change the part the message names (no other coder works with the other parts)"
