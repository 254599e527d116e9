"""What a user sees when a plugin is broken: the plugin is named, the rest keeps working.

Plugin modules are named in ``CODEC_PLUGINS`` from a folder on the path (in-process) or the
current folder (the console script, in a subprocess).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from codec_lab.cli.app import BUILTIN_COMMANDS, add_plugin_commands, app
from codec_lab.corelib.errors import PluginWarning
from codec_lab.registry.manager import make_plugin_manager
from tests.cli.conftest import assert_clean_failure, codec_command, invoke
from tests.helpers import TINY_SETS, write_module

PARTS = '''
from codec_lab import hookimpl
from codec_lab.plugins.coders.histogram import HistogramCoder


class FloatDecode(HistogramCoder):
    name = "float-decode"

    def decode(self, *args, **kwargs):
        return super().decode(*args, **kwargs).float()


class RaisingEncode(HistogramCoder):
    name = "raising-encode"

    def encode(self, stream, context=None):
        raise ValueError("laplace scale must be positive")


@hookimpl
def codec_register_coders():
    return [FloatDecode, RaisingEncode]
'''

COMMANDS = '''
from codec_lab import hookimpl
from codec_lab.errors import ConfigError


@hookimpl
def codec_register_commands(app):
    @app.command("hello")
    def hello(name: str = "world") -> None:
        """Say hello."""
        print(f"hello {name}")

    @app.command("build")
    def build() -> None:
        print("not the real build")

    @app.command("oops")
    def oops() -> None:
        raise KeyError("no such greeting")

    @app.command("refuse")
    def refuse() -> None:
        raise ConfigError("greeting.name is empty", "pass --name")
'''

RAISING_COMMANDS = '''
from codec_lab import hookimpl


@hookimpl
def codec_register_commands(app):
    @app.command("half")
    def half() -> None:
        pass

    raise RuntimeError("typer too old")
'''

MODULES = ("pcli_parts", "pcli_broken", "pcli_broken2", "pcli_unmarked", "pcli_commands", "pcli_raising")


@pytest.fixture
def site(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    write_module(fake_site, "pcli_parts", PARTS)
    yield fake_site
    for name in MODULES:
        sys.modules.pop(name, None)


def _build(out: Path, *args: str):
    return invoke("build", "--steps", "1", "--out", out, *TINY_SETS, *args)


# ---------------------------------------------------------------- 1. a component breaking its contract
def test_a_broken_coder_fails_before_training(site: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("CODEC_PLUGINS", "pcli_parts")
    out = tmp_path / "run"
    err = assert_clean_failure(_build(out, "--coder", "float-decode"), code=1)
    assert err.splitlines()[-2:] == [
        "Error: coder 'float-decode'.decode (pcli_parts from CODEC_PLUGINS) returned a float32 tensor "
        "(4, 2, 2) for stream 'y'; decode must return int64 symbols shaped (4, 2, 2)",
        "  → return symbols.to(torch.int64); if you did not write this plugin, report it to its authors",
    ]
    assert "Training" in err and "epoch" not in err  # it failed before the first step
    assert not out.exists()


# ---------------------------------------------------------------- 2. an exception in a plugin
def test_an_exception_in_a_plugin_names_the_plugin(site: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("CODEC_PLUGINS", "pcli_parts")
    out = tmp_path / "run"
    result = _build(out, "--coder", "raising-encode")
    err = assert_clean_failure(result, code=1)  # not "internal error … report it"
    assert err.splitlines()[-2:] == [
        'Error: plugin "pcli_parts" (CODEC_PLUGINS) raised ValueError in coder \'raising-encode\'.encode: '
        "laplace scale must be positive",
        "  → report it to the plugin's authors; CODEC_DEBUG=1 shows the traceback",
    ]
    assert not out.exists()
    monkeypatch.setenv("CODEC_DEBUG", "1")
    result = _build(out, "--coder", "raising-encode")
    assert "Traceback" in result.stderr and 'raise ValueError("laplace scale' in result.stderr


# ---------------------------------------------------------------- 4. a plugin that does not load
def test_a_plugin_that_does_not_load_is_a_warning(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(site, "pcli_broken", "raise ImportError('needs libfoo')\n")
    monkeypatch.setenv("CODEC_PLUGINS", "pcli_broken,pcli_parts")
    result = invoke("build", "--rate", "admm", "--dry-run", *TINY_SETS)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        'warning: plugin "pcli_broken" (CODEC_PLUGINS) could not be loaded: ImportError: needs libfoo; '
        "its components are unavailable",
        "  → fix it, or remove it from CODEC_PLUGINS",
    ]
    result = invoke("build", "--dry-run", "--coder", "float-decode", *TINY_SETS)  # the other plugin works
    assert result.exit_code == 0, result.stderr


def test_an_unknown_component_names_the_failed_plugin(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(site, "pcli_broken2", "raise ImportError('needs libbar')\n")
    monkeypatch.setenv("CODEC_PLUGINS", "pcli_broken2")
    err = assert_clean_failure(invoke("build", "--coder", "laplace", "--dry-run"), code=2)
    assert "Error: unknown coder 'laplace'" in err
    assert err.rstrip().endswith('plugin "pcli_broken2" failed to load; it may provide it')


# ---------------------------------------------------------------- 3. a module that registers nothing
def test_a_module_without_hookimpl_is_a_warning(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(site, "pcli_unmarked", "def codec_register_rates():\n    return []\n")
    monkeypatch.setenv("CODEC_PLUGINS", "pcli_unmarked")
    result = invoke("build", "--dry-run", *TINY_SETS)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        'warning: plugin "pcli_unmarked" (CODEC_PLUGINS) registers nothing: its functions '
        "codec_register_rates lack @hookimpl",
        "  → mark each with @hookimpl (from codec_lab import hookimpl)",
    ]


# ---------------------------------------------------------------- 6. refused compositions
def test_a_refused_coder_is_not_offered_again() -> None:
    err = assert_clean_failure(invoke("build", "--rate", "entropy", "--coder", "cabac", "--dry-run"), code=2)
    assert err.splitlines()[-1] == ("  → change the part the message names, or keep the other parts and "
                                    "choose coder 'factorized'")


# ---------------------------------------------------------------- 7. commands from plugins
@pytest.fixture
def with_commands(site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The root app with the commands of ``pcli_commands`` and ``pcli_raising`` added (undone after)."""
    write_module(site, "pcli_commands", COMMANDS)
    write_module(site, "pcli_raising", RAISING_COMMANDS)
    monkeypatch.setattr(app, "registered_commands", list(app.registered_commands))
    monkeypatch.setattr(app, "registered_groups", list(app.registered_groups))
    monkeypatch.setenv("CODEC_PLUGINS", "pcli_commands,pcli_raising")
    return site


def test_a_plugin_adds_commands(with_commands: Path) -> None:
    with pytest.warns(PluginWarning) as w:
        add_plugin_commands(app, make_plugin_manager())
    assert sorted(str(x.message) for x in w) == [
        'plugin "pcli_commands" (CODEC_PLUGINS): its command "build" clashes with a built-in command; it '
        "is skipped\n  → rename the command (built-in command names are reserved)",
        'plugin "pcli_raising" (CODEC_PLUGINS) could not add its commands: codec_register_commands raised '
        "RuntimeError: typer too old; its commands are unavailable\n"
        "  → fix or uninstall it, or set CODEC_DISABLE_PLUGIN_AUTOLOAD=1",
    ]
    result = invoke("hello", "--name", "plugins")
    assert (result.exit_code, result.stdout) == (0, "hello plugins\n")
    assert "Say hello." in invoke("--help").stdout
    assert "Compose a codec from plugins" in invoke("build", "--help").stdout  # still ours
    assert invoke("half").exit_code == 2  # the raising plugin added nothing
    err = assert_clean_failure(invoke("oops"), code=1)
    assert err.splitlines() == [
        'Error: plugin "pcli_commands" (CODEC_PLUGINS) raised KeyError in command \'oops\': '
        "'no such greeting'",
        "  → report it to the plugin's authors; CODEC_DEBUG=1 shows the traceback",
    ]
    assert assert_clean_failure(invoke("refuse"), code=2).splitlines() == [
        "Error: greeting.name is empty", "  → pass --name"]


def test_builtin_commands_are_reserved() -> None:
    assert {"build", "compress", "decompress", "eval", "plugins", "compare"} <= BUILTIN_COMMANDS


def test_the_console_script_runs_plugin_commands_and_warns_once(tmp_path: Path) -> None:
    """End to end: the real ``codec``, plugin modules in the current folder."""
    write_module(tmp_path, "pcli_commands", COMMANDS)
    write_module(tmp_path, "pcli_broken", "raise ImportError('needs libfoo')\n")
    env = {k: v for k, v in os.environ.items() if k != "CODEC_DEBUG"}
    env["CODEC_PLUGINS"] = "pcli_commands,pcli_broken"
    proc = subprocess.run([*codec_command(), "hello", "--name", "console"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, "hello console\n"), proc.stderr
    assert proc.stderr.count('warning: plugin "pcli_broken" (CODEC_PLUGINS) could not be loaded') == 1
    assert proc.stderr.count('its command "build" clashes with a built-in command') == 1
    proc = subprocess.run([*codec_command(), "build", "--dry-run", "--rate", "admm"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # the broken plugin does not take the rest down
    assert proc.stderr.count("could not be loaded") == 1, proc.stderr  # once, though loaded twice
    assert "composed codec" in proc.stdout
