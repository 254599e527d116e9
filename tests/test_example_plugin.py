"""The example third-party package ``examples/l1-laplace``, installed beside codec-lab (CI's
``.ci/run`` installs it): found through its entry point, keeps the contracts, and a codec built
with it by ``codec build`` codes real files that decode bit-exactly in another process.

Skipped, saying why, when the package is not installed here. Hermetic otherwise: discovery
sees this distribution's entry points only, so other installed plugins change nothing.
"""

from __future__ import annotations

import ast
import filecmp
import importlib
import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from codec_lab.corelib.files import decode_bytes
from codec_lab.corelib.images import to_uint8
from codec_lab.registry import manager
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec
from codec_lab.registry.runs import load_run
from codec_lab.testing import check_coder, check_info, check_rate
from tests.cli.conftest import codec_command, invoke
from tests.helpers import TINY_SETS, image_tensor, write_image

DIST = "codec-lab-l1-laplace"
MODULE = "codec_l1_laplace"
SOURCE = Path(__file__).resolve().parents[1] / "examples" / "l1-laplace"

try:
    _dist = md.distribution(DIST)
except md.PackageNotFoundError:
    _dist = None

installed = pytest.mark.skipif(
    _dist is None,
    reason=f"the example plugin package {DIST} is not installed here: "
    "`pip install ./examples/l1-laplace` (CI's .ci/run installs it)",
)

# The tiny codec of tests/helpers.py with this package's rate: ADMM's `cell` key does not apply.
SETS = [s for pair in zip(TINY_SETS[::2], TINY_SETS[1::2], strict=True) if "model.rate." not in pair[1]
        for s in pair]  # fmt: skip


def test_imports_only_the_public_api() -> None:
    """The example is what a third party can write: codec-lab's public modules, torch, numpy,
    constriction and the standard library, never codec-lab's internals."""
    public = {"codec_lab", "codec_lab.contracts", "codec_lab.errors"}
    libraries = {"torch", "numpy", "constriction", MODULE, *sys.stdlib_module_names}
    for path in sorted((SOURCE / MODULE).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                ok = name in public or name.split(".")[0] in libraries
                assert ok, f"{path.name} imports {name}: a plugin imports only the public API"


@pytest.fixture
def only_this_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entry-point discovery on, seeing this distribution's entry points only."""
    monkeypatch.delenv("CODEC_DISABLE_PLUGIN_AUTOLOAD", raising=False)

    def entry_points(group: str) -> md.EntryPoints:
        return md.EntryPoints(ep for ep in md.distribution(DIST).entry_points if ep.group == group)

    monkeypatch.setattr(manager.md, "entry_points", entry_points)


@installed
def test_installed_copy_is_the_source() -> None:
    installed = Path(importlib.import_module(MODULE).__file__).parent
    source = SOURCE / MODULE
    names = sorted(p.name for p in source.glob("*.py"))
    _, mismatch, errors = filecmp.cmpfiles(source, installed, names, shallow=False)
    assert not mismatch and not errors, (
        f"the installed {DIST} differs from {source} in {mismatch + errors}: "
        "reinstall it with `pip install ./examples/l1-laplace`"
    )


@installed
def test_found_through_its_entry_point(only_this_distribution: None) -> None:
    registry = Registry()
    for kind, name in [("rate", "l1-sparsity"), ("coder", "laplace-static")]:
        info = registry.get(kind, name)
        check_info(info)
        assert info.source == f"{DIST}=={_dist.version}", info.source
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(result.stdout)}
    assert rows[("rate", "l1-sparsity")]["source"] == f"{DIST}=={_dist.version}"
    assert rows[("coder", "laplace-static")]["module"].startswith(MODULE)


@installed
def test_keeps_the_contracts(only_this_distribution: None) -> None:
    registry = Registry()
    rate, coder = registry.get("rate", "l1-sparsity").cls, registry.get("coder", "laplace-static").cls
    stochastic = registry.get("quantizer", "stochastic").cls
    check_rate(rate(), stochastic(bound=7))
    check_rate(rate(drop_below=1e6), stochastic(bound=7))  # a (C, 1, 1) channel mask
    check_coder(coder)


@installed
def test_a_channel_mask_codes_through_the_codec(only_this_distribution: None) -> None:
    registry = Registry()
    model = {"encoder": {"name": "cae", "channels": 8, "blocks": 0, "latent_channels": 4},
             "quantizer": {"name": "stochastic", "bound": 7},
             "rate": {"name": "l1-sparsity", "drop_below": 0.5},
             "decoder": {"name": "cae", "channels": 8, "blocks": 0}}  # fmt: skip
    cfg = assemble_config(registry, config={"model": model}, train={"device": "cpu"})
    assert cfg["model"]["coder"]["name"] == "laplace-static"  # the rate's default_components
    torch.manual_seed(0)
    codec = build_codec(cfg["model"], registry).eval()
    codec.rate.keep.copy_(torch.tensor([True, False, True, False]))  # as on_train_end decides
    x = image_tensor(40, 56)
    coded = codec.compress(x)
    x_hat = codec.decompress(coded["strings"], coded["shape"])["x_hat"]
    with torch.no_grad():
        expected = codec(x)
    assert torch.allclose(x_hat, expected["x_hat"].clamp(0, 1), atol=1e-5)
    assert expected["rate"].info["kept"] == 0.5


@installed
def test_build_compress_decompress_from_the_command_line(
    only_this_distribution: None, data_dirs: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = invoke("build", "--rate", "l1-sparsity", "--coder", "laplace-static", "--steps", "2",
                    "--out", run, "--data", data_dirs["train"], "--val", data_dirs["val"], *SETS)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "Training cae + l1-sparsity + laplace-static" in result.stderr
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert (cfg["model"]["rate"]["name"], cfg["model"]["coder"]["name"]) == ("l1-sparsity", "laplace-static")
    assert "| L1 | zeros | kept |" in (run / "report.md").read_text()  # the rate's report_columns

    image = write_image(tmp_path / "photo.png", 50, 37, seed=4)
    cdl, png = tmp_path / "photo.cdl", tmp_path / "photo-decoded.png"
    result = invoke("compress", image, "--model", run, "-o", cdl)
    assert result.exit_code == 0, result.stderr
    result = invoke("decompress", cdl, "--model", run, "-o", png)
    assert result.exit_code == 0, result.stderr
    here = np.asarray(Image.open(png))
    assert here.shape == (50, 37, 3)
    assert np.array_equal(here, to_uint8(decode_bytes(load_run(run), cdl.read_bytes())))

    # A fresh process, the installed console script, the plugin named by CODEC_PLUGINS.
    there = tmp_path / "photo-there.png"
    env = {**os.environ, "CODEC_PLUGINS": MODULE, "CODEC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    args = ["--threads", "2", "decompress", str(cdl), "--model", str(run), "-o", str(there)]
    proc = subprocess.run([*codec_command(), *args], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.array_equal(np.asarray(Image.open(there)), here), "another process decoded other pixels"
