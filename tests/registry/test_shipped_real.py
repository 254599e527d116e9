"""The models really shipped in ``registry/shipped``: present, intact, and working end to end.

No fixture redirects the folder here. These tests fail while the package ships no models, or
lacks a point of the default family: a fresh install must compress a photo with no training.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from codec_lab.corelib.container import unpack
from codec_lab.corelib.images import sample_images
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import build_codec
from codec_lab.registry.runs import init_weights, load_run
from codec_lab.registry.shipped_models import (
    DEFAULT_FAMILY,
    QUALITIES,
    default_model,
    file_sha256,
    load_index,
    shipped_dir,
    verify,
)
from tests.cli.conftest import invoke

HOW = "ship them with `python -m codec_lab.registry.ship_model` (docs/models.md)"
MIN_PSNR = 18.0
"""A floor far below any trained model's PSNR on a photo and far above a broken one's (~10 dB)."""


def _photo(tmp_path: Path) -> Path:
    """A 128x192 crop of a Kodak image: ``$CODEC_DATA/kodak`` when present, else a shipped sample."""
    kodak = Path(os.environ.get("CODEC_DATA", "../shared/data")) / "kodak" / "kodim23.png"
    source = kodak if kodak.is_file() else sample_images("held-out")[0]
    with Image.open(source) as im:
        crop = im.convert("RGB").crop((64, 64, 64 + 192, 64 + 128))
    path = tmp_path / "crop.png"
    crop.save(path)
    return path


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")


def test_the_default_family_is_shipped_at_every_quality() -> None:
    models = load_index()
    assert models, f"{shipped_dir()} holds no models: {HOW}"
    have = {m.quality for m in models if m.family == DEFAULT_FAMILY}
    missing = [q for q in QUALITIES if q not in have]
    assert not missing, f"the default family {DEFAULT_FAMILY!r} lacks quality {missing}: {HOW}"
    assert default_model().family == DEFAULT_FAMILY
    assert len({m.model_digest for m in models}) == len(models), "two entries ship the same weights"


def test_every_shipped_model_is_intact_and_round_trips_a_photo(tmp_path: Path) -> None:
    models = load_index()
    assert models, f"{shipped_dir()} holds no models: {HOW}"
    photo = _photo(tmp_path)
    original = np.asarray(Image.open(photo).convert("RGB"))
    for m in models:
        weights = m.path / "weights.safetensors"
        assert weights.is_file(), f"{m.name}: {weights} is missing"
        assert file_sha256(weights) == m.sha256, f"{m.name}: weights differ from the index's SHA-256"
        assert weights.stat().st_size == m.bytes, m.name
        assert load_run(verify(m)).weights_digest() == m.model_digest, m.name
        for key in ("bpp", "psnr", "ms_ssim"):
            assert isinstance(m.metrics.get(key), float), f"{m.name}: no {key} in its metrics"
        assert (m.metrics.get("set"), m.metrics.get("images")) == ("Kodak", 24), (
            f"{m.name}: its metrics are not Kodak's 24 images (ship a run built with --val KODAK)")
        assert m.command.startswith("codec"), f"{m.name}: no training command recorded"
        cdl, png = tmp_path / f"{m.name}.cdl", tmp_path / f"{m.name}.png"
        result = invoke("compress", photo, "--model", m.name, "-o", cdl)
        assert result.exit_code == 0, f"{m.name}: {result.stderr}"
        assert unpack(cdl.read_bytes())[0].digest == m.model_digest
        result = invoke("decompress", cdl, "-o", png)  # no --model: found by the header's digest
        assert result.exit_code == 0, f"{m.name}: {result.stderr}"
        decoded = np.asarray(Image.open(png).convert("RGB"))
        assert decoded.shape == original.shape, m.name
        psnr = _psnr(original, decoded)
        assert psnr >= MIN_PSNR, f"{m.name}: {psnr:.2f} dB on a Kodak crop"


def test_compress_with_no_model_uses_the_default(tmp_path: Path) -> None:
    photo = _photo(tmp_path)
    result = invoke("compress", photo, "-o", tmp_path / "photo.cdl")
    assert result.exit_code == 0, result.stderr
    assert unpack((tmp_path / "photo.cdl").read_bytes())[0].digest == default_model().model_digest


def test_a_shipped_model_starts_a_fine_tuning_build() -> None:
    # `codec build --init entropy-q3 --set model.rate.weight=…` trains another rate point from it
    model = default_model()
    run = verify(model)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"]["rate"]["weight"] = 2 * config["model"]["rate"]["weight"]
    codec = build_codec(config["model"], Registry())
    facts = init_weights(codec, model.name)
    assert facts == {"from": model.name, "weights_digest": model.model_digest}
