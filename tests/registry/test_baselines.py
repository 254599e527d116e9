"""Baselines (classical codecs) register through ``codec_register_baselines`` like components."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec_lab import hookimpl
from codec_lab.contracts import Baseline, ReportColumn
from codec_lab.corelib.classical import evaluate_classical
from codec_lab.corelib.contracts import KINDS
from codec_lab.corelib.errors import (
    ConfigError,
    PluginLoadError,
    PluginWarning,
    UnknownComponentError,
)
from codec_lab.corelib.images import sample_images
from codec_lab.plugins.baselines.pillow import JPEG
from codec_lab.plugins.rates.admm import ADMMRate
from codec_lab.registry.components import Registry
from codec_lab.registry.manager import make_plugin_manager
from tests.helpers import write_module


class Gray(Baseline):
    """A third-party baseline: luma only, as a PNG of quantized gray levels."""

    name = "gray-png"
    summary = "gray levels in a PNG (a third-party test baseline)"
    version = "2.0"
    setting = ReportColumn("levels", "levels", ".0f", "gray levels")
    sweep = (4, 16, 64)
    low, high = 2, 256
    suffix = ".png"

    def encode(self, image: np.ndarray, setting: float) -> bytes:
        step = 256 / int(setting)
        gray = image.mean(axis=-1)
        q = (np.floor(gray / step) * step + step / 2).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(q, "L").save(buf, "PNG")
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB")).copy()

    def library(self) -> str:
        return "Pillow PNG"


class _Plugin:
    """A plugin object with one ``codec_register_baselines`` implementation."""

    def __init__(self, classes) -> None:
        self.classes = classes

    @hookimpl
    def codec_register_baselines(self):
        return self.classes


def _registry_with(*classes) -> Registry:
    pm = make_plugin_manager(entry_points=False, extra=())
    pm.register(_Plugin(list(classes)), name="test-plugin")
    return Registry(pm)


def test_builtins() -> None:
    r = Registry()
    assert r.baseline_names() == ["avif", "jpeg", "jpeg2000", "webp"]
    assert r.baseline_names("jpeg*") == ["jpeg", "jpeg2000"]
    assert [i.name for i in r.baseline_infos()] == r.baseline_names()
    assert {i.kind for i in r.baseline_infos()} == {"baseline"}


def test_components_are_unchanged_by_baselines() -> None:
    r = Registry()
    assert {i.kind for i in r.infos()} == set(KINDS) and "baseline" not in KINDS
    with pytest.raises(UnknownComponentError, match="unknown component kind 'baseline'"):
        r.get("baseline", "jpeg")


@pytest.mark.parametrize("name", ["jpeg", "JPEG", " Jpeg ", JPEG])
def test_baseline_is_a_fresh_instance(name) -> None:
    r = Registry()
    b = r.baseline(name)
    assert type(b) is JPEG and b is not r.baseline("jpeg")


def test_unknown_name_suggests() -> None:
    with pytest.raises(UnknownComponentError) as e:
        Registry().baseline("jpg")
    assert "unknown baseline 'jpg'" in str(e.value)
    assert "did you mean 'jpeg'" in e.value.hint and "valid: avif, jpeg, jpeg2000, webp" in e.value.hint
    assert "codec plugins" in e.value.hint


def test_a_third_party_baseline_registers_and_runs() -> None:
    r = _registry_with(Gray)
    assert r.baseline_names() == ["avif", "gray-png", "jpeg", "jpeg2000", "webp"]
    info = r.baseline_info("gray_png")
    assert (info.kind, info.cls, info.version, info.source) == ("baseline", Gray, "2.0", "unknown")
    assert info.summary == Gray.summary
    res = evaluate_classical(r.baseline("gray-png"), sample_images("held-out")[:1], setting=16)
    assert res.codec.name == "gray-png" and res.rows[0]["levels"] == 16 and res.rows[0]["psnr"] > 15


def test_a_third_party_module_in_codec_plugins(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = '''
import numpy as np
from codec_lab import hookimpl
from codec_lab.contracts import Baseline


class Raw(Baseline):
    """Raw RGB bytes after a fixed header."""

    name = "raw-rgb"
    sweep = (100,)
    suffix = ".rgb"

    def unavailable(self):
        return "needs librawfoo: pip install rawfoo"

    def encode(self, image, setting):
        return b"%d %d\\n" % image.shape[:2] + image.tobytes()

    def decode(self, data):
        head, body = data.split(b"\\n", 1)
        h, w = map(int, head.split())
        return np.frombuffer(body, np.uint8).reshape(h, w, 3).copy()

    def library(self):
        return "none"


@hookimpl
def codec_register_baselines():
    return [Raw]
'''
    write_module(fake_site, "fake_baseline_plugin", source)
    monkeypatch.setenv("CODEC_PLUGINS", "fake_baseline_plugin")
    monkeypatch.delitem(sys.modules, "fake_baseline_plugin", raising=False)
    r = Registry()
    info = r.baseline_info("raw-rgb")
    assert info.source == "CODEC_PLUGINS" and info.summary == "Raw RGB bytes after a fixed header."
    assert r.baseline_unavailable("raw-rgb") == "needs librawfoo: pip install rawfoo"
    with pytest.raises(ConfigError) as e:
        r.baseline("raw-rgb")
    assert "baseline 'raw-rgb' is not available: needs librawfoo: pip install rawfoo" in str(e.value)
    sys.modules.pop("fake_baseline_plugin", None)


def test_a_duplicate_names_both_plugins() -> None:
    class OtherJPEG(Gray):
        name = "jpeg"

    with pytest.warns(PluginWarning) as w:
        r = _registry_with(OtherJPEG)
    msg = str(w[0].message)
    assert "baseline 'jpeg' is registered twice" in msg
    assert "built-in (codec_lab.plugins.baselines.pillow)" in msg and f"({__name__})" in msg
    assert "rename your component (built-in names are reserved)" in msg
    assert r.baseline_info("jpeg").source == "built-in"


def test_a_duplicate_within_one_plugin() -> None:
    with pytest.warns(PluginWarning, match="baseline 'gray-png' is registered twice"):
        r = _registry_with(Gray, Gray)
    assert r.baseline_info("gray-png").cls is Gray


@pytest.mark.parametrize("bad", [ADMMRate, "jpeg", JPEG()])
def test_registering_a_non_baseline_is_refused(bad) -> None:
    with pytest.warns(PluginWarning, match="does not subclass codec_lab.contracts.Baseline") as w:
        _registry_with(bad)
    assert "test-plugin" in str(w[0].message)


def test_a_baseline_registered_as_a_component_is_refused() -> None:
    pm = make_plugin_manager(entry_points=False, extra=())

    class Wrong:
        @hookimpl
        def codec_register_rates(self):
            return [Gray]

    pm.register(Wrong(), name="wrong-plugin")
    with pytest.warns(PluginWarning, match="does not subclass codec_lab.contracts.Rate"):
        Registry(pm)


@pytest.mark.parametrize("bad", ["", "Gray_PNG", "with space", "-lead", "two--dash"])
def test_name_must_be_kebab_case(bad: str) -> None:
    cls = type("Bad", (Gray,), {"name": bad})
    with pytest.warns(PluginWarning, match="baseline Bad needs a lowercase kebab-case `name`"):
        _registry_with(cls)


@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        ({"setting": "quality"}, "`setting` must be a ReportColumn"),
        ({"sweep": ()}, r"`sweep` must hold settings within \[2, 256\]"),
        ({"sweep": (1, 4)}, r"`sweep` must hold settings within \[2, 256\]"),
        ({"sweep": ("high",)}, "`sweep` a tuple of numbers"),
        ({"low": 300}, "needs `low` < `high`"),
        ({"suffix": "png"}, "`suffix` must be a file suffix with its dot"),
    ],
)
def test_declarations_are_checked(attrs: dict, match: str) -> None:
    cls = type("Bad", (Gray,), attrs)
    with pytest.warns(PluginWarning, match=match) as w:
        r = _registry_with(cls)
    assert "plugin 'test-plugin': baseline 'gray-png'" in str(w[0].message)
    with pytest.raises(UnknownComponentError) as e:
        r.baseline_info("gray-png")
    assert "was skipped" in e.value.hint  # asking for it says why it is missing


def test_a_baseline_that_cannot_say_is_unavailable() -> None:
    class Broken(Gray):
        name = "broken"

        def __init__(self) -> None:
            raise RuntimeError("no config")

    r = _registry_with(Broken)
    assert "RuntimeError: no config" in r.baseline_unavailable("broken")
    with pytest.raises(PluginLoadError, match="baseline 'broken' .* cannot be constructed: RuntimeError"):
        r.baseline("broken")


def test_hook_may_return_nothing() -> None:
    assert _registry_with().baseline_names() == Registry().baseline_names()
    pm = make_plugin_manager(entry_points=False, extra=())
    pm.register(_Plugin(None), name="none-plugin")
    assert Registry(pm).baseline_names() == Registry().baseline_names()
