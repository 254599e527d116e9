"""Distortion losses for training (the rate loss comes from the rate plugin)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from pytorch_msssim import ms_ssim, ssim

from codec_lab.corelib.metrics import ms_ssim_window

__all__ = ["distortion_loss"]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _psnr_per_image(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    mse = ((x - x_hat) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


def distortion_loss(kind: str, crop: int) -> Loss:
    """The distortion loss ``kind`` (``mix`` | ``mse`` | ``ms-ssim``) for ``crop``² patches.

    ``mix`` is CAE-ADMM's: 1000·(1 − MS-SSIM) + 1000·(1 − SSIM) + 1e4·MSE + (45 − PSNR),
    with standard (not the authors' buggy) MS-SSIM (A9); the window shrinks so that five
    scales fit the crop. ``mse`` is 255²·MSE (CompressAI's scale), ``ms-ssim`` is
    1000·(1 − MS-SSIM).
    """
    win = ms_ssim_window(crop, crop) or 3

    def msssim(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return ms_ssim(x_hat, x, data_range=1.0, win_size=win)

    if kind == "mse":
        return lambda x, x_hat: 255**2 * torch.mean((x - x_hat) ** 2)
    if kind == "ms-ssim":
        return lambda x, x_hat: 1000 * (1 - msssim(x, x_hat))
    if kind == "mix":

        def mix(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
            mse = torch.mean((x - x_hat) ** 2)
            return (
                1000 * (1 - msssim(x, x_hat))
                + 1000 * (1 - ssim(x_hat, x, data_range=1.0, win_size=min(11, win)))
                + 1e4 * mse
                + (45 - _psnr_per_image(x, x_hat).mean())
            )

        return mix
    raise ValueError(f"unknown loss {kind!r}")
