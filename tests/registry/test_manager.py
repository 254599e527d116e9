"""Plugin discovery: built-ins, the codec.plugins entry-point group, CODEC_PLUGINS."""

from __future__ import annotations

import importlib.metadata as md
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from codec_lab.corelib.errors import PluginWarning
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec
from codec_lab.registry.manager import BUILTIN_PLUGINS, make_plugin_manager
from tests.contract import checks
from tests.helpers import (
    DUPLICATE_RATE_MODULE,
    FAKE_QUANTIZER_MODULE,
    TINY_MODEL,
    image_tensor,
    write_dist,
    write_module,
)

FAKE_MODULES = ("fake_codec_plugin", "fake_env_plugin", "fake_dup_plugin", "fake_broken_plugin",
                "fake_typo_plugin")  # fmt: skip


@pytest.fixture
def site(fake_site: Path) -> Iterator[Path]:
    """``fake_site`` (the only place entry points are found); fake modules are forgotten after."""
    yield fake_site
    for name in FAKE_MODULES:
        sys.modules.pop(name, None)


def _install_fake(site: Path) -> None:
    write_module(site, "fake_codec_plugin", FAKE_QUANTIZER_MODULE.replace("{name}", "fake-ternary"))
    write_dist(site, "fake-codec-plugin", "1.2.3", {"fake": "fake_codec_plugin"})


def test_builtins_are_registered_by_module_name() -> None:
    pm = make_plugin_manager(entry_points=False, extra=())
    assert [pm.get_name(p) for p in pm.get_plugins()] != []
    for module in BUILTIN_PLUGINS:
        assert pm.get_plugin(module) is not None
    assert {i.source for i in Registry(pm).infos()} == {"built-in"}


def test_entry_point_plugin_is_discovered(site: Path) -> None:
    _install_fake(site)
    pm = make_plugin_manager()
    assert pm.get_plugin("fake") is not None
    info = Registry(pm).get("quantizer", "fake-ternary")
    assert info.source == "fake-codec-plugin==1.2.3"
    assert info.version == "1.2.3" and info.summary == "fake third-party ternary quantizer"
    assert info.cls.__module__ == "fake_codec_plugin"
    assert "fake-ternary" in Registry().names("quantizer")


def test_entry_point_plugin_keeps_the_contract_and_composes(site: Path) -> None:
    _install_fake(site)
    registry = Registry()
    checks.check_quantizer(checks.construct(registry.get("quantizer", "fake-ternary")))
    model = {**TINY_MODEL, "quantizer": {"name": "fake-ternary"}}
    cfg = assemble_config(registry, config={"model": model})
    torch.manual_seed(0)
    codec = build_codec(cfg["model"], registry).eval()
    assert codec.specs[0].alphabet == 3
    x = image_tensor(32, 40)
    with torch.no_grad():
        ref = codec(x)["x_hat"].clamp(0, 1)
    assert torch.equal(codec.decompress(**codec.compress(x))["x_hat"], ref)


@pytest.mark.parametrize("value", ["1", "true"])
def test_disable_autoload_skips_entry_points(site: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    _install_fake(site)
    monkeypatch.setenv("CODEC_DISABLE_PLUGIN_AUTOLOAD", value)
    assert "fake-ternary" not in Registry().names("quantizer")
    assert "fake_codec_plugin" not in sys.modules
    assert "fake-ternary" in Registry(make_plugin_manager(entry_points=True)).names("quantizer")


def test_entry_points_false_skips_them(site: Path) -> None:
    _install_fake(site)
    assert "fake-ternary" not in Registry(make_plugin_manager(entry_points=False)).names("quantizer")


def test_codec_plugins_env_loads_modules(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(site, "fake_env_plugin", FAKE_QUANTIZER_MODULE.replace("{name}", "env-ternary"))
    monkeypatch.setenv("CODEC_PLUGINS", " fake_env_plugin , ")
    info = Registry().get("quantizer", "env-ternary")
    assert info.source == "CODEC_PLUGINS"


def test_codec_plugins_works_with_autoload_disabled(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(site, "fake_env_plugin", FAKE_QUANTIZER_MODULE.replace("{name}", "env-ternary"))
    monkeypatch.setenv("CODEC_PLUGINS", "fake_env_plugin")
    monkeypatch.setenv("CODEC_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "env-ternary" in Registry().names("quantizer")


def test_module_named_twice_is_registered_once(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_fake(site)
    monkeypatch.setenv("CODEC_PLUGINS", "fake_codec_plugin,codec_lab.plugins.rates.admm")
    registry = Registry()
    assert registry.names("quantizer").count("fake-ternary") == 1
    assert registry.get("rate", "admm").source == "built-in"


def test_duplicate_of_a_builtin_is_skipped_naming_both(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A third party taking a built-in name is skipped with a warning; the built-in stays."""
    write_module(site, "fake_dup_plugin", DUPLICATE_RATE_MODULE)
    monkeypatch.setenv("CODEC_PLUGINS", "fake_dup_plugin")
    with pytest.warns(PluginWarning) as w:
        registry = Registry()
    msg = str(w[0].message)
    assert msg.startswith('plugin "fake_dup_plugin" (CODEC_PLUGINS): rate \'admm\' is registered twice')
    assert "built-in (codec_lab.plugins.rates.admm)" in msg and "CODEC_PLUGINS (fake_dup_plugin)" in msg
    assert "it is skipped" in msg
    # a built-in cannot be uninstalled: the fix is the plugin's
    assert "→ rename your component (built-in names are reserved)" in msg and "uninstall" not in msg
    assert registry.get("rate", "admm").source == "built-in"


def test_duplicate_from_a_distribution_names_it(site: Path) -> None:
    write_module(site, "fake_dup_plugin", DUPLICATE_RATE_MODULE)
    write_dist(site, "fake-dup", "0.9", {"dup": "fake_dup_plugin"})
    with pytest.warns(PluginWarning, match=r"fake-dup==0\.9 \(fake_dup_plugin\)"):
        Registry()


def test_duplicate_between_two_third_parties(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither is built-in: the second is skipped and either may be uninstalled or renamed."""
    write_module(site, "fake_codec_plugin", FAKE_QUANTIZER_MODULE.replace("{name}", "twin"))
    write_module(site, "fake_env_plugin", FAKE_QUANTIZER_MODULE.replace("{name}", "twin"))
    monkeypatch.setenv("CODEC_PLUGINS", "fake_codec_plugin,fake_env_plugin")
    with pytest.warns(PluginWarning, match="quantizer 'twin' is registered twice") as w:
        registry = Registry()
    assert "uninstall one of the two plugins, or rename one component" in str(w[0].message)
    assert registry.get("quantizer", "twin").cls.__module__ == "fake_codec_plugin"


def test_broken_module_in_codec_plugins_is_skipped(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(site, "fake_broken_plugin", "import torch\nraise ImportError('needs libfoo')\n")
    monkeypatch.setenv("CODEC_PLUGINS", "fake_broken_plugin")
    with pytest.warns(PluginWarning) as w:
        pm = make_plugin_manager()
    assert [str(x.message) for x in w] == [
        'plugin "fake_broken_plugin" (CODEC_PLUGINS) could not be loaded: ImportError: needs libfoo; '
        "its components are unavailable\n  → fix it, or remove it from CODEC_PLUGINS"
    ]
    assert [(p.plugin, p.failed) for p in pm.problems] == [("fake_broken_plugin", True)]
    with pytest.warns(PluginWarning):
        registry = Registry()
    assert "admm" in registry.names("rate")  # everything else still works


def test_missing_module_in_codec_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEC_PLUGINS", "no_such_codec_plugin_module")
    with pytest.warns(PluginWarning, match="ModuleNotFoundError") as w:
        make_plugin_manager()
    assert "check the module name in CODEC_PLUGINS" in str(w[0].message)


def test_broken_entry_point_is_skipped(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(site, "fake_broken_plugin", "x = 1 / 0\n")
    write_dist(site, "fake-broken", "2.0", {"broken": "fake_broken_plugin"})
    match = r'plugin "broken" \(fake-broken==2\.0\) could not be loaded: ZeroDivisionError'
    with pytest.warns(PluginWarning, match=match) as w:
        pm = make_plugin_manager()
    assert "its components are unavailable\n  → fix or uninstall it, or set CODEC_DISABLE_PLUGIN_AUTOLOAD=1" \
        in str(w[0].message)
    assert pm.get_plugin("broken") is None and pm.get_plugin(BUILTIN_PLUGINS[0]) is not None
    monkeypatch.setenv("CODEC_DISABLE_PLUGIN_AUTOLOAD", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert make_plugin_manager().problems == []


def test_misspelled_hook_is_skipped_with_a_suggestion(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(site, "fake_typo_plugin",
                 "from codec_lab import hookimpl\n\n@hookimpl\ndef codec_register_rate():\n    return []\n")
    monkeypatch.setenv("CODEC_PLUGINS", "fake_typo_plugin")
    with pytest.warns(PluginWarning, match='plugin "fake_typo_plugin" \\(CODEC_PLUGINS\\) is not valid') as w:
        pm = make_plugin_manager()
    assert "did you mean 'codec_register_rates'" in str(w[0].message)
    assert pm.get_plugin("fake_typo_plugin") is None
    assert "admm" in Registry(pm).names("rate")


DUMMY_DIST = "codec-lab-dummy-plugin"


def _dummy_installed() -> bool:
    try:
        md.distribution(DUMMY_DIST)
    except md.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _dummy_installed(), reason=f"{DUMMY_DIST} is not installed (CI installs it)")
def test_an_installed_plugin_is_found_by_real_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    """With autoload on, a really installed distribution is discovered; with it off (the
    suite's default) it is not, which keeps every other test independent of it."""
    assert "ci-sign" not in Registry().names("quantizer")
    monkeypatch.delenv("CODEC_DISABLE_PLUGIN_AUTOLOAD")
    info = Registry().get("quantizer", "ci-sign")
    assert info.source.startswith(f"{DUMMY_DIST}==") and "ci-copy-admm" in Registry().names("rate")
