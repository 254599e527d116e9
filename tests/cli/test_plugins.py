"""``codec plugins`` lists the baselines (classical codecs) as their own kind."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from codec_lab.plugins.baselines import pillow
from tests.cli.conftest import invoke
from tests.helpers import write_module

UNAVAILABLE_BASELINE = '''
from codec_lab import hookimpl
from codec_lab.contracts import Baseline


class Missing(Baseline):
    name = "missing-codec"
    summary = "a codec whose library is not installed"
    sweep = (50,)
    suffix = ".mc"

    def unavailable(self):
        return "needs libmissing: pip install missing[fast]"

    def encode(self, image, setting):
        raise AssertionError("never called")

    def decode(self, data):
        raise AssertionError("never called")

    def library(self):
        return "libmissing"


@hookimpl
def codec_register_baselines():
    return [Missing]
'''


def test_baselines_come_last_as_their_own_kind() -> None:
    rows = json.loads(invoke("plugins", "--json").stdout)
    kinds = [r["kind"] for r in rows]
    assert kinds[-4:] == ["baseline"] * 4 and kinds.count("baseline") == 4
    baselines = [r for r in rows if r["kind"] == "baseline"]
    assert [r["name"] for r in baselines] == ["avif", "jpeg", "jpeg2000", "webp"]
    jpeg = next(r for r in baselines if r["name"] == "jpeg")
    assert jpeg["source"] == "built-in" and jpeg["module"] == "codec_lab.plugins.baselines.pillow"
    assert jpeg["unavailable"] is None


def test_table_lists_baselines() -> None:
    result = invoke("plugins")
    assert result.exit_code == 0
    assert "baseline" in result.stdout and "jpeg2000" in result.stdout and "OpenJPEG" in result.stdout


def test_unavailable_ones_say_why(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(fake_site, "fake_missing_baseline", UNAVAILABLE_BASELINE)
    monkeypatch.setenv("CODEC_PLUGINS", "fake_missing_baseline")
    monkeypatch.delitem(sys.modules, "fake_missing_baseline", raising=False)
    monkeypatch.setattr(pillow.features, "check", lambda feature: feature != "avif")
    rows = {r["name"]: r for r in json.loads(invoke("plugins", "--json").stdout) if r["kind"] == "baseline"}
    assert rows["missing-codec"]["unavailable"] == "needs libmissing: pip install missing[fast]"
    assert rows["missing-codec"]["source"] == "CODEC_PLUGINS"
    assert "11.3" in rows["avif"]["unavailable"] and rows["jpeg"]["unavailable"] is None
    out = invoke("plugins").stdout
    assert "unavailable: needs libmissing: pip install missing[fast]" in out  # brackets kept
    assert "unavailable: this Pillow" in out
    sys.modules.pop("fake_missing_baseline", None)
