"""Photometric losses and metrics: L1, SSIM (11x11 Gaussian window, sigma 1.5), PSNR."""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=16)
def _kernel1d(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of images [...,H,W,C] in [0,1] (Wang et al. 2004, C1=0.01^2, C2=0.03^2, 11x11
    Gaussian window with sigma 1.5, applied separably), over the valid region (no padding)."""
    x = a.reshape(-1, *a.shape[-3:]).permute(0, 3, 1, 2)
    y = b.reshape(-1, *b.shape[-3:]).permute(0, 3, 1, 2)
    c = x.shape[1]
    size = min(size, x.shape[-1], x.shape[-2])
    g = _kernel1d(size, sigma, x.device, x.dtype)
    stack = torch.cat([x, y, x * x, y * y, x * y], 1)
    n = stack.shape[1]
    blur = F.conv2d(stack, g.view(1, 1, size, 1).expand(n, 1, size, 1), groups=n)
    blur = F.conv2d(blur, g.view(1, 1, 1, size).expand(n, 1, 1, size), groups=n)
    mx, my, xx, yy, xy = blur.split(c, 1)
    sxx = xx - mx * mx
    syy = yy - my * my
    sxy = xy - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(torch.mean((a.clamp(0, 1) - b) ** 2))
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def photometric_loss(render: torch.Tensor, gt: torch.Tensor, ssim_lambda: float = 0.2) -> torch.Tensor:
    """(1 - lambda) * L1 + lambda * (1 - SSIM), as in 3DGS."""
    l1 = torch.abs(render - gt).mean()
    return (1.0 - ssim_lambda) * l1 + ssim_lambda * (1.0 - ssim(render, gt))
