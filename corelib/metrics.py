"""Quality metrics on 8-bit rounded images, as CompressAI's ``eval_model`` computes them."""

from __future__ import annotations

import math

import torch
from pytorch_msssim import ms_ssim, ssim

__all__ = ["bpp_from_likelihoods", "ms_ssim_window", "psnr", "quality", "round8"]


def round8(x: torch.Tensor) -> torch.Tensor:
    """Quantize to the 8-bit grid (values stay in [0, 1])."""
    return x.clamp(0, 1).mul(255).round().div(255)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB for images in [0, 1]."""
    mse = torch.mean((a - b) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def ms_ssim_window(h: int, w: int) -> int | None:
    """Largest odd Gaussian window (≤ 11) that MS-SSIM's 5 scales allow, or None if too small."""
    side = min(h, w)
    for win in (11, 9, 7, 5, 3):
        if side > (win - 1) * 16:
            return win
    return None


def quality(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """PSNR, MS-SSIM and SSIM (RGB) of ``x_hat`` against ``x``, both rounded to 8 bits.

    MS-SSIM uses the standard 11-pixel window when the image allows it and a smaller one
    for small images (NaN below 48 px).
    """
    a, b = round8(x) * 255, round8(x_hat) * 255
    win = ms_ssim_window(*x.shape[-2:])
    ms = float(ms_ssim(a, b, data_range=255, win_size=win)) if win else float("nan")
    ss = float(ssim(a, b, data_range=255, win_size=min(11, win or 3)))
    return {"psnr": psnr(a / 255, b / 255), "ms-ssim": ms, "ssim": ss}


def bpp_from_likelihoods(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated bits per pixel: Σ −log2 likelihood / pixels (CompressAI's formula)."""
    total = sum(torch.log2(v.clamp_min(1e-12)).sum() for v in likelihoods.values())
    return -total / num_pixels
