"""Shared fixtures: a fresh registry, tiny codecs, tiny images, and trained tiny runs.

Everything is sized for a 2-core CPU: the codec has ~1k parameters, images are a few dozen
pixels, and training takes 3 steps. Trained runs are built once per session.
"""

from __future__ import annotations

import copy
import importlib.metadata as md
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from codec_lab.corelib.codec import Codec
from codec_lab.registry import manager
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec
from codec_lab.registry.runs import load_run, train_run
from tests.helpers import TINY_MODEL, TINY_TRAIN, image_folder, write_image

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))

# Hermetic from collection on (modules that list components at import time included): plugins
# installed in the environment are not loaded. See _clean_env.
os.environ["CODEC_DISABLE_PLUGIN_AUTOLOAD"] = "1"

PLUGIN_ENV = ("CODEC_PLUGINS", "CODEC_DISABLE_PLUGIN_AUTOLOAD", "CODEC_DEBUG", "CODEC_THREADS")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without the user's plugin/debug/thread environment, and hermetic: plugins
    installed in the environment (entry points) are not loaded, so the suite passes with or
    without third-party plugins. Tests of discovery install their own (``tests/registry``).
    Subprocesses inherit this through ``os.environ``."""
    for key in PLUGIN_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CODEC_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path standing in for site-packages, with entry-point autoload on.

    Discovery sees only the distributions written into this folder (``write_dist``), so
    what else is installed in the environment cannot change a test's outcome.
    """
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv("CODEC_DISABLE_PLUGIN_AUTOLOAD", raising=False)

    def entry_points(group: str) -> md.EntryPoints:
        return md.EntryPoints(ep for dist in md.distributions(path=[str(folder)])
                              for ep in dist.entry_points if ep.group == group)  # fmt: skip

    monkeypatch.setattr(manager.md, "entry_points", entry_points)
    return folder


@pytest.fixture
def registry() -> Registry:
    """A fresh registry: the built-ins (entry-point autoload is off in tests)."""
    return Registry()


def tiny_config(registry: Registry, data: dict[str, str] | None = None, seed: int = 0,
                **model_over: Any) -> dict[str, Any]:
    """A resolved config of the tiny codec; ``model_over`` replaces whole component sections."""
    model = copy.deepcopy(TINY_MODEL)
    model.update(model_over)
    return assemble_config(registry, config={"model": model}, train={**TINY_TRAIN, "seed": seed},
                           data=data or {})  # fmt: skip


@pytest.fixture
def tiny_codec(registry: Registry) -> Codec:
    """An untrained tiny codec in eval mode (the ADMM template is not projected: no mask)."""
    torch.manual_seed(0)
    return build_codec(tiny_config(registry)["model"], registry).eval()


@pytest.fixture
def image_file(tmp_path: Path):
    """Factory: ``image_file(name, h, w, seed=0, mode="RGB")`` writes a tiny image."""

    def make(name: str = "img.png", h: int = 48, w: int = 40, seed: int = 0, mode: str = "RGB") -> Path:
        return write_image(tmp_path / name, h, w, seed, mode)

    return make


@pytest.fixture(scope="session")
def data_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny training and validation folders (3 + 2 images)."""
    root = tmp_path_factory.mktemp("data")
    train = image_folder(root / "train", [(56, 64), (48, 48), (40, 72)], seed=10)
    val = image_folder(root / "val", [(48, 40), (64, 64)], seed=20)
    return {"train": train, "val": val}


def _train(tmp_path_factory: pytest.TempPathFactory, data_dirs: dict[str, Path], seed: int,
           name: str) -> Path:  # fmt: skip
    reg = Registry()
    cfg = tiny_config(reg, {"train": str(data_dirs["train"]), "val": str(data_dirs["val"])}, seed)
    out = tmp_path_factory.mktemp("runs") / name
    train_run(cfg, out, reg)
    return out


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, data_dirs: dict[str, Path]) -> Path:
    """A run folder of the tiny codec trained for 3 steps (ADMM template projected)."""
    return _train(tmp_path_factory, data_dirs, seed=0, name="tiny")


@pytest.fixture(scope="session")
def other_run(tmp_path_factory: pytest.TempPathFactory, data_dirs: dict[str, Path]) -> Path:
    """Another run of the same composition with a different seed: different weights."""
    return _train(tmp_path_factory, data_dirs, seed=1, name="tiny-other")


@pytest.fixture
def trained_codec(trained_run: Path) -> Codec:
    """The trained tiny codec, freshly loaded (tests may modify it)."""
    return load_run(trained_run)


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty shipped-models folder standing in for ``registry/shipped``."""
    from codec_lab.registry import shipped_models

    folder = tmp_path / "shipped"
    folder.mkdir()
    monkeypatch.setattr(shipped_models, "shipped_dir", lambda: folder)
    return folder


@pytest.fixture
def family(shipped: Path, trained_run: Path, other_run: Path) -> Path:
    """The default shipped family with two points: quality 3 (``trained_run``) and 1
    (``other_run``)."""
    from codec_lab.registry import ship_model
    from codec_lab.registry.shipped_models import DEFAULT_FAMILY, DEFAULT_QUALITY

    command = "codec build --rate admm --steps 3 --out runs/tiny"
    ship_model.ship(trained_run, f"{DEFAULT_FAMILY}-q{DEFAULT_QUALITY}", family=DEFAULT_FAMILY,
                    quality=DEFAULT_QUALITY, command=command)  # fmt: skip
    ship_model.ship(other_run, f"{DEFAULT_FAMILY}-q1", family=DEFAULT_FAMILY, quality=1, command=command)
    return shipped
