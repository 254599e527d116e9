"""Metrics and losses."""

from __future__ import annotations

import math

import pytest
import torch

from codec_lab.corelib.losses import distortion_loss
from codec_lab.corelib.metrics import bpp_from_likelihoods, ms_ssim_window, psnr, quality, round8
from tests.helpers import image_tensor


@pytest.mark.parametrize("hw", [(64, 64), (200, 180), (50, 37)])
def test_identical_images_are_perfect(hw: tuple[int, int]) -> None:
    x = image_tensor(*hw)
    q = quality(x, x.clone())
    assert q["psnr"] == math.inf
    assert q["ssim"] == pytest.approx(1.0, abs=1e-6)
    if min(hw) > 32:
        assert q["ms-ssim"] == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_is_nan_when_five_scales_do_not_fit() -> None:
    x = image_tensor(32, 64)
    q = quality(x, x)
    assert math.isnan(q["ms-ssim"]) and q["ssim"] == pytest.approx(1.0, abs=1e-6)


def test_quality_rounds_to_8_bits_first() -> None:
    x = image_tensor(32, 32)
    assert quality(x, x + 0.4 / 255)["psnr"] == math.inf


def test_psnr_value() -> None:
    a = torch.zeros(1, 3, 4, 4)
    assert psnr(a, a + 0.1) == pytest.approx(20.0)


def test_quality_degrades_with_noise() -> None:
    x = image_tensor(64, 64)
    noisy = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    q = quality(x, noisy)
    assert 15 < q["psnr"] < 40 and q["ms-ssim"] < 1 and q["ssim"] < 1


def test_round8() -> None:
    x = torch.tensor([0.0, 0.3 / 255, 0.6 / 255, 1.2])
    assert torch.equal(round8(x) * 255, torch.tensor([0.0, 0.0, 1.0, 255.0]))


def test_ms_ssim_window() -> None:
    assert ms_ssim_window(256, 256) == 11
    assert ms_ssim_window(161, 500) == 11
    assert ms_ssim_window(160, 500) == 9
    assert ms_ssim_window(48, 48) == 3
    assert ms_ssim_window(32, 32) is None


def test_bpp_from_likelihoods() -> None:
    lk = {"y": torch.full((1, 4, 2, 2), 0.5), "z": torch.ones(1, 1, 2, 2)}
    assert float(bpp_from_likelihoods(lk, 8)) == pytest.approx(2.0)


@pytest.mark.parametrize("kind", ["mix", "mse", "ms-ssim"])
def test_distortion_losses(kind: str) -> None:
    x = image_tensor(48, 48).expand(2, -1, -1, -1).clone()
    y = (x + 0.1).clamp(0, 1).requires_grad_(True)
    fn = distortion_loss(kind, 48)
    worse = fn(x, y)
    assert worse.dim() == 0 and float(worse.detach()) > 0
    worse.backward()
    assert y.grad is not None
    better = fn(x, (x + 0.01).clamp(0, 1))
    assert float(better) < float(worse.detach())


def test_mse_loss_is_zero_for_identical() -> None:
    x = image_tensor(48, 48)
    assert float(distortion_loss("mse", 48)(x, x)) == 0.0


def test_unknown_loss() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        distortion_loss("l1", 48)
