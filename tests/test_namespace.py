"""Everything installs under ``codec_lab``: nothing generic lands in site-packages, and
modules in the user's working folder named like ours change nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.cli.conftest import codec_command

ROOT = Path(__file__).resolve().parents[1]
GENERIC = ("corelib", "plugins", "registry", "cli")


def _shadowing_folder(tmp_path: Path) -> Path:
    """A working folder holding ``registry.py``, ``corelib.py`` and a ``cli`` package that
    explode when imported, as a user's project or another package might."""
    work = tmp_path / "work"
    (work / "cli").mkdir(parents=True)
    boom = "raise RuntimeError('the user\\'s own {} was imported')\n"
    (work / "registry.py").write_text(boom.format("registry.py"))
    (work / "corelib.py").write_text(boom.format("corelib.py"))
    (work / "plugins.py").write_text(boom.format("plugins.py"))
    (work / "cli" / "__init__.py").write_text(boom.format("cli package"))
    (work / "cli" / "app.py").write_text(boom.format("cli/app.py"))
    return work


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CODEC_DEBUG", "CODEC_PLUGINS")}


def test_codec_command_ignores_modules_in_the_working_folder(tmp_path: Path) -> None:
    work = _shadowing_folder(tmp_path)
    proc = subprocess.run([*codec_command(), "plugins", "--json"], cwd=work, env=_env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert {"admm", "histogram", "cae"} <= {r["name"] for r in json.loads(proc.stdout)}


def test_import_codec_lab_ignores_modules_in_the_working_folder(tmp_path: Path) -> None:
    work = _shadowing_folder(tmp_path)
    code = ("import sys, codec_lab, codec_lab.contracts, codec_lab.registry.components as c\n"
            "from codec_lab import hookimpl\n"
            "from codec_lab.contracts import Encoder, Decoder, Quantizer, Rate, EntropyCoder, Stream, "
            "StreamSpec, RateOutput\n"
            "c.Registry()\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {GENERIC!r}))")  # fmt: skip
    # ``python -c`` puts the working folder first on sys.path, the worst case.
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, env=_env(), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"  # no top-level corelib/plugins/registry/cli module loaded


def test_the_package_loads_no_top_level_generic_module() -> None:
    import codec_lab.cli.app  # noqa: F401  (imports every layer)
    from codec_lab.registry.components import Registry

    Registry()
    assert not [m for m in sys.modules if m.split(".")[0] in GENERIC]


def test_the_plugin_api_is_importable_from_its_public_paths() -> None:
    import codec_lab.contracts as api
    from codec_lab import hookimpl
    from codec_lab.registry import hookimpl as registry_hookimpl

    assert hookimpl is registry_hookimpl
    for name in ("Encoder", "Decoder", "Quantizer", "Rate", "EntropyCoder", "Stream", "StreamSpec",
                 "RateOutput"):  # fmt: skip
        assert getattr(api, name).__module__.startswith("codec_lab.corelib.")


@pytest.mark.skipif(os.environ.get("CODEC_SKIP_WHEEL") == "1", reason="CODEC_SKIP_WHEEL=1")
def test_the_wheel_holds_only_codec_lab(tmp_path: Path) -> None:
    """Build the wheel as pip would (no dependencies) and list what it installs."""
    had_build = (ROOT / "build").exists()
    try:
        _build_wheel(tmp_path)
    finally:  # setuptools builds in the source tree; leave it as it was
        if not had_build:
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    (wheel,) = tmp_path.glob("codec_lab-*.whl")
    _check_wheel(wheel)


def _build_wheel(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
                           str(ROOT)], capture_output=True, text=True, timeout=600)  # fmt: skip
    if proc.returncode != 0 and "Could not find a version" in proc.stderr:
        pytest.skip("no package index to fetch the build backend from")
    assert proc.returncode == 0, proc.stderr[-2000:]


def _check_wheel(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"codec_lab", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    for must in ("codec_lab/__init__.py", "codec_lab/contracts.py", "codec_lab/corelib/codec.py",
                 "codec_lab/plugins/rates/admm.py", "codec_lab/registry/manager.py",
                 "codec_lab/cli/app.py", "codec_lab/corelib/samples/held-out/kodim20.png"):  # fmt: skip
        assert must in names, must
    assert not [n for n in names if n.startswith("codec_lab/tests") or "__pycache__" in n]
