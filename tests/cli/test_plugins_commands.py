"""``codec plugins`` as a command group: ``list`` (what bare ``codec plugins`` prints), ``show``,
``check`` and ``new``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import assert_clean_failure, invoke
from tests.helpers import write_module

FLOAT_DECODE = '''
from codec_lab import hookimpl
from codec_lab.plugins.coders.histogram import HistogramCoder


class FloatDecode(HistogramCoder):
    name = "laplace-static"
    summary = "decodes float32 symbols"

    def decode(self, data, spec, shape, mask, context=None):
        return super().decode(data, spec, shape, mask, context).float()


@hookimpl
def codec_register_coders():
    return [FloatDecode]
'''


@pytest.fixture
def float_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A third-party coder (named in CODEC_PLUGINS) whose decode returns float32."""
    write_module(tmp_path, "codec_float_plugin", FLOAT_DECODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CODEC_PLUGINS", "codec_float_plugin")
    yield "laplace-static"
    sys.modules.pop("codec_float_plugin", None)


def test_bare_plugins_and_plugins_list_print_the_same_listing() -> None:
    bare, listed = invoke("plugins", "--json"), invoke("plugins", "list", "--json")
    assert bare.exit_code == 0 and listed.exit_code == 0, bare.stderr + listed.stderr
    assert json.loads(bare.stdout) == json.loads(listed.stdout)
    assert "histogram" in invoke("plugins", "list").stdout


def test_help_lists_the_subcommands_and_shows_flags_as_flags() -> None:
    out = invoke("plugins", "--help").stdout
    for sub in ("list", "show", "check", "new"):
        assert sub in out
    check_help = invoke("plugins", "check", "--help").stdout
    assert "--json" in check_help and "--json <bool>" not in check_help.replace("  ", " ")


def test_show_a_rate() -> None:
    result = invoke("plugins", "show", "admm")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith("rate 'admm' — ")
    for words in ("origin              built-in", "codec_lab.plugins.rates.admm (ADMMRate)",
                  "default components  encoder=cae, quantizer=stochastic, coder=histogram, decoder=cae",
                  "default sweep       keep = 0.05, 0.1, 0.2, 0.4", "kept (.3f): fraction"):  # fmt: skip
        assert words in out, out
    keep = next(line for line in out.splitlines() if line.strip().startswith("keep "))
    assert keep.split()[:3] == ["keep", "float", "0.1"] and "fraction of template positions kept" in keep


def test_show_a_name_of_two_kinds_shows_both_or_the_one_asked() -> None:
    both = invoke("plugins", "show", "cae").stdout
    assert "encoder 'cae'" in both and "decoder 'cae'" in both
    one = json.loads(invoke("plugins", "show", "cae", "--kind", "decoder", "--json").stdout)
    assert [d["kind"] for d in one] == ["decoder"]
    assert {"key": "output_bn", "type": "bool"}.items() <= next(
        k for k in one[0]["config"] if k["key"] == "output_bn").items()


def test_show_a_coder_and_a_baseline() -> None:
    cabac = invoke("plugins", "show", "cabac").stdout
    assert "fitting      counted" in cabac and "an estimate, within" in cabac
    assert "requires     rate: entropy" in invoke("plugins", "show", "factorized").stdout
    jpeg = invoke("plugins", "show", "jpeg").stdout
    assert "available  yes" in jpeg and "setting    quality" in jpeg and "suffix     .jpg" in jpeg


def test_show_an_unknown_name_suggests() -> None:
    err = assert_clean_failure(invoke("plugins", "show", "tcea"),
                               contains="no component or baseline is named 'tcea'")
    assert "did you mean 'tcae'" in err
    assert_clean_failure(invoke("plugins", "show", "tcae", "--kind", "rate"), contains="unknown rate 'tcae'")


def test_check_a_builtin_passes_every_rule() -> None:
    result = invoke("plugins", "check", "stochastic", "--no-fresh-process")
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("quantizer 'stochastic' (built-in)")
    assert "  ✓ symbols are int64 in [0, K)" in lines and "✗" not in result.stdout
    assert lines[-1].strip().endswith("0 failed, 0 skipped")


def test_check_names_the_broken_rule_and_the_plugin(float_decode: str) -> None:
    result = invoke("plugins", "check", float_decode, "--no-fresh-process")
    err = assert_clean_failure(result, code=1)
    out = result.stdout
    assert "  ✗ decode returns int64 symbols of the stream's shape" in out
    assert ("coder 'laplace-static' (CODEC_PLUGINS): rule \"decode returns int64 symbols of the stream's "
            "shape\" failed: decode returned torch.float32") in out  # fmt: skip
    assert "→ convert with .to(torch.int64)" in out
    assert "  ✓ bit-exact round trip" in out  # every rule ran
    assert "coder 'laplace-static' (CODEC_PLUGINS): 1 of" in err


def test_check_json(float_decode: str) -> None:
    result = invoke("plugins", "check", float_decode, "histogram", "--kind", "coder", "--no-fresh-process",
                    "--json")  # fmt: skip
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert [(r["name"], r["ok"], r["failed"]) for r in rows] == [("laplace-static", False, 1),
                                                                 ("histogram", True, 0)]
    failed = [r for r in rows[0]["rules"] if r["status"] == "failed"]
    assert failed[0]["rule"] == "decode returns int64 symbols of the stream's shape"


def test_new_writes_a_package_and_prints_the_next_steps(tmp_path: Path) -> None:
    result = invoke("plugins", "new", "my-rate", "--kind", "rate", "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    root = tmp_path / "my-rate"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "README.md", "codec_lab_my_rate.py", "pyproject.toml", "tests/test_my_rate.py"]  # fmt: skip
    out = result.stdout
    assert f"pip install -e {root.as_posix()}" in out
    assert "codec plugins check my-rate" in out and "codec build --rate my-rate" in out
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points."codec.plugins"]\nmy-rate = "codec_lab_my_rate"' in pyproject
    assert 'dependencies = ["codec-lab' in pyproject


def test_new_prints_a_relative_install_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = invoke("plugins", "new", "my-coder", "--kind", "coder").stdout
    assert "pip install -e ./my-coder" in out and "codec build --coder my-coder" in out


@pytest.mark.parametrize(("args", "words"), [
    (("new", "admm", "--kind", "rate"), "rate 'admm' already exists: built-in registers it"),
    (("new", "cae", "--kind", "decoder"), "already exists: built-in registers it"),
    (("new", "jpeg", "--kind", "baseline"), "baseline 'jpeg' already exists"),
    (("new", "My_Rate", "--kind", "rate"), "invalid plugin name 'My_Rate'"),
    (("new", "my--rate", "--kind", "rate"), "lowercase kebab-case"),
    (("new", "my-rate", "--kind", "rates"), "unknown kind 'rates'"),
])  # fmt: skip
def test_new_refuses(args: tuple[str, ...], words: str, tmp_path: Path) -> None:
    err = assert_clean_failure(invoke("plugins", *args, "--out", tmp_path), contains=words)
    assert not any(tmp_path.iterdir())
    if "My_Rate" in args:
        assert "e.g. 'my-rate'" in err
    if "rates" in args:
        assert "did you mean 'rate'" in err


def test_new_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "my-rate").mkdir()
    (tmp_path / "my-rate" / "keep.txt").write_text("mine")
    assert_clean_failure(invoke("plugins", "new", "my-rate", "--kind", "rate", "--out", tmp_path),
                         contains="already exists; refusing to overwrite it")  # fmt: skip
    assert [p.name for p in (tmp_path / "my-rate").iterdir()] == ["keep.txt"]
