"""SSIM's window and stabilisers, shared by the metric and the loss."""
from __future__ import annotations

import functools

import torch

C1, C2 = 0.01 ** 2, 0.03 ** 2  # K1 = 0.01, K2 = 0.03, dynamic range 1 (Wang et al. 2004)


@functools.lru_cache(maxsize=16)
def _kernel1d(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()
