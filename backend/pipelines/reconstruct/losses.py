"""Photometric losses and metrics: L1, SSIM (11x11 Gaussian window, sigma 1.5), PSNR."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .ssim_fused import ssim_loss_term
from .ssim_window import C1, C2, _kernel1d


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
    s = ((2 * mx * my + C1) * (2 * sxy + C2)) / ((mx * mx + my * my + C1) * (sxx + syy + C2))
    return s.mean()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(torch.mean((a.clamp(0, 1) - b) ** 2))
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def photometric_loss(render: torch.Tensor, gt: torch.Tensor, ssim_lambda: float = 0.2) -> torch.Tensor:
    """(1 - lambda) * L1 + lambda * (1 - SSIM), as in 3DGS (SSIM through its analytic backward)."""
    l1 = torch.abs(render - gt).mean()
    if ssim_lambda == 0:
        return l1
    return (1.0 - ssim_lambda) * l1 + ssim_lambda * (1.0 - ssim_loss_term(render, gt))
