"""Per-kind lookup: normalised names, did-you-mean, refusal of bad registrations."""

from __future__ import annotations

import pytest

from codec_lab import hookimpl
from codec_lab.corelib.contracts import KINDS
from codec_lab.corelib.errors import PluginWarning, UnknownComponentError
from codec_lab.plugins.quantizers.stochastic import StochasticQuantizer
from codec_lab.plugins.rates.admm import ADMMRate
from codec_lab.registry.components import Registry, normalize
from codec_lab.registry.manager import make_plugin_manager


def test_builtins() -> None:
    r = Registry()
    assert "cae" in r.names("encoder")
    assert "admm" in r.names("rate") and "histogram" in r.names("coder")
    assert "stochastic" in r.names("quantizer") and "cae" in r.names("decoder")


def test_infos_are_in_data_path_order() -> None:
    kinds = [i.kind for i in Registry().infos()]
    order = list(KINDS)
    assert kinds == sorted(kinds, key=order.index)


@pytest.mark.parametrize("name", ["admm", "ADMM", " Admm ", ADMMRate])
def test_get_normalises(name) -> None:
    assert Registry().get("rate", name).cls is ADMMRate


def test_normalize() -> None:
    assert normalize(" Inclined_TCAE ") == "inclined-tcae"


def test_unknown_name_suggests() -> None:
    with pytest.raises(UnknownComponentError) as e:
        Registry().get("rate", "admn")
    assert "unknown rate 'admn'" in str(e.value)
    assert "did you mean 'admm'" in e.value.hint and "codec plugins" in e.value.hint


def test_unknown_kind_suggests() -> None:
    with pytest.raises(UnknownComponentError, match="did you mean 'rate'"):
        Registry().get("rates", "admm")


def test_names_pattern() -> None:
    r = Registry()
    assert r.names("rate", "ad*") == ["admm"]
    assert r.names("rate", "zz*") == []


class _Plugin:
    def __init__(self, **hooks) -> None:
        for name, classes in hooks.items():
            setattr(self, name, hookimpl(self._returning(classes)))

    @staticmethod
    def _returning(classes):
        def hook():
            return classes

        return hook


def _registry_with(**hooks) -> Registry:
    pm = make_plugin_manager(entry_points=False, extra=())
    pm.register(_Plugin(**hooks), name="test-plugin")
    return Registry(pm)


def test_registering_a_class_of_another_kind_is_refused() -> None:
    """A registration that breaks a rule is skipped with a warning; the rest still registers."""
    with pytest.warns(PluginWarning, match="does not subclass codec_lab.contracts.Rate.*it is skipped"):
        r = _registry_with(codec_register_rates=[StochasticQuantizer])
    assert r.names("rate") == Registry().names("rate")
    assert [p.plugin for p in r.problems] == ["test-plugin"]


def test_registering_a_non_class_is_refused() -> None:
    with pytest.warns(PluginWarning, match="test-plugin"):
        _registry_with(codec_register_rates=["admm"])


def test_a_hook_returning_a_class_not_a_list() -> None:
    with pytest.warns(PluginWarning, match="returned .*, not a list of classes") as w:
        _registry_with(codec_register_rates=ADMMRate)
    assert "return a list, e.g. [ADMMRate]" in str(w[0].message)


@pytest.mark.parametrize("bad", ["", "Big_Name", "with space", "admm!", "-lead", "two--dash"])
def test_name_must_be_kebab_case(bad: str) -> None:
    cls = type("Bad", (ADMMRate,), {"name": bad})
    with pytest.warns(PluginWarning, match="kebab-case"):
        _registry_with(codec_register_rates=[cls])


def test_summary_falls_back_to_the_docstring() -> None:
    cls = type("Documented", (ADMMRate,), {"name": "documented", "summary": "",
                                           "__doc__": "\n  First line.\n\n  More."})  # fmt: skip
    info = _registry_with(codec_register_rates=[cls]).get("rate", "documented")
    assert info.summary == "First line." and info.source == "unknown"


def test_hook_may_return_nothing() -> None:
    r = _registry_with(codec_register_rates=None)
    assert r.names("rate") == Registry().names("rate")  # the built-ins only
