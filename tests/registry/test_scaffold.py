"""``codec plugins new`` writes, for every kind, a package that pip installs and that works:
``codec plugins`` lists it from its distribution, ``codec plugins check`` passes, its own tests
pass, and a scaffolded rate builds a codec.

The packages are installed once, with pip, into a folder of their own (never the project's
environment), and every command runs in a subprocess whose ``PYTHONPATH`` holds that folder,
so entry points are found through the installed dist-info as a user's would be. The four
commands run side by side (a busy 2-core machine shares its time per process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codec_lab.cli.commands import plugins as plugins_cli
from codec_lab.registry.scaffold import SCAFFOLD_KINDS, module_name, scaffold
from tests.cli.conftest import codec_command
from tests.helpers import image_folder

NAMES = {kind: f"scaf-{kind}" for kind in SCAFFOLD_KINDS}
"""One package per kind; an encoder or a decoder package holds the same-named pair."""

TINY = [
    "--set", "model.encoder.channels=8", "--set", "model.encoder.blocks=0",
    "--set", "model.encoder.latent_channels=4", "--set", "model.decoder.channels=8",
    "--set", "model.decoder.blocks=0", "--set", "model.quantizer.bound=7",
    "--set", "train.batch_size=2", "--set", "train.crop=48", "--set", "train.device=cpu",
]  # fmt: skip
"""The tiny model of ``tests.helpers.TINY_SETS`` for the scaffolded rate's default components
(cae, stochastic, histogram): no ``model.rate.cell``, which only ``admm`` has."""


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


class Background:
    """A command started now, finished on first use."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args = args
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)  # fmt: skip
        self._done: Finished | None = None

    def result(self, timeout: float = 600) -> Finished:
        if self._done is None:
            out, err = self.proc.communicate(timeout=timeout)
            self._done = Finished(self.proc.returncode, out, err)
        return self._done

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Background]]:
    """Every kind scaffolded by ``codec plugins new``, pip-installed into ``site/``, and the four
    commands under test started on them."""
    root = tmp_path_factory.mktemp("scaffold")
    for kind, name in NAMES.items():
        result = CliRunner().invoke(plugins_cli.app, ["new", name, "--kind", kind, "--out", str(root)])
        assert result.exit_code == 0, result.output
    site = root / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(site), *(str(root / n) for n in NAMES.values())],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("CODEC_DISABLE_PLUGIN_AUTOLOAD", "CODEC_PLUGINS")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(OMP_NUM_THREADS="1", CODEC_THREADS="1")  # beside other torch jobs, one thread each
    train = image_folder(root / "data" / "train", [(48, 48), (40, 56)], seed=1)
    val = image_folder(root / "data" / "val", [(32, 48)], seed=2)
    codec = codec_command()
    started = {
        "list": Background([*codec, "plugins", "--json"], env, root),
        "check": Background([*codec, "plugins", "check", *NAMES.values()], env, root),
        "pytest": Background([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              *(str(root / n / "tests") for n in NAMES.values())], env, root),  # fmt: skip
        "build": Background([*codec, "build", "--rate", NAMES["rate"], "--steps", "2", "--out",
                             str(root / "run"), "--data", str(train), "--val", str(val), *TINY],
                            env, root),  # fmt: skip
    }
    yield started
    for job in started.values():
        job.stop()


def test_every_kind_is_a_complete_package(tmp_path: Path, registry) -> None:
    for kind, name in NAMES.items():
        made = scaffold(registry, name, kind, tmp_path)
        module = module_name(name)
        assert made.root == tmp_path / name and module == "codec_lab_" + name.replace("-", "_")
        files = {p.relative_to(made.root).as_posix() for p in made.files}
        assert files == {"pyproject.toml", f"{module}.py", "README.md", f"tests/test_{module[10:]}.py"}
        compile((made.root / f"{module}.py").read_text(), f"{module}.py", "exec")
        assert "from codec_lab import hookimpl" in (made.root / f"{module}.py").read_text()
        assert "from codec_lab.testing import" in (made.root / "tests" / f"test_{module[10:]}.py").read_text()
        readme = (made.root / "README.md").read_text()
        assert "pip install -e ." in readme and f"codec plugins check {name}" in readme
        assert "$" not in readme.replace("$ ", "")  # every placeholder filled
        # the author's test report is free of compressai's import-time torch.jit noise
        noise = '"ignore:`torch.jit.script` is deprecated:FutureWarning"'
        assert noise in (made.root / "pyproject.toml").read_text()
        assert made.next_steps[:2] == (f"pip install -e {made.root.as_posix()}",
                                       f"codec plugins check {name}")


def test_codec_plugins_lists_them_from_their_distributions(installed: dict[str, Background]) -> None:
    done = installed["list"].result()
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {(r["kind"], r["name"]): r for r in json.loads(done.stdout)}
    for kind, name in NAMES.items():
        kinds = ("encoder", "decoder") if kind in ("encoder", "decoder") else (kind,)
        for k in kinds:
            row = rows[(k, name)]
            assert row["source"] == f"codec-lab-{name}==0.1.0" and row["module"] == module_name(name)
    assert rows[("baseline", NAMES["baseline"])]["unavailable"] is None


def test_codec_plugins_check_passes_every_rule(installed: dict[str, Background]) -> None:
    done = installed["check"].result()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "✗" not in done.stdout
    for name in NAMES.values():
        assert f"'{name}' (codec-lab-{name}==0.1.0)" in done.stdout
    assert done.stdout.count("✓ deterministic in a fresh process") == len(NAMES) + 2  # two pairs
    assert "✓ composes with its default components into a working codec" in done.stdout


def test_their_own_tests_pass(installed: dict[str, Background]) -> None:
    done = installed["pytest"].result()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_a_scaffolded_rate_builds_a_codec(installed: dict[str, Background]) -> None:
    done = installed["build"].result()
    assert done.returncode == 0, done.stderr[-3000:]
    run = next(a for a in installed["build"].args if a.endswith("run"))
    config = (Path(run) / "config.yaml").read_text()
    assert f"name: {NAMES['rate']}" in config and "name: histogram" in config
    assert "Run folder:" in done.stdout
