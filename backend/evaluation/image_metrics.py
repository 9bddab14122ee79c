"""Image and video quality metrics: PSNR, SSIM (optionally restricted to a mask) and flicker.

Images are (H, W) or (H, W, C) arrays; ``data_range`` is the span of valid values (255 for
8-bit, 1 for unit floats). A ``mask`` (H, W) bool restricts the statistics to its pixels, e.g.
the disoccluded region of a synthesised right eye.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    return a, b


def _mask(mask, shape) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask, bool)
    if m.shape != tuple(shape[:2]):
        raise ValueError(f"mask has shape {m.shape}, expected {tuple(shape[:2])}")
    if not m.any():
        raise ValueError("mask selects no pixels")
    return m


def mse(a, b, mask=None) -> float:
    """Mean squared error over all channels, over ``mask`` pixels when given."""
    a, b = _pair(a, b)
    m = _mask(mask, a.shape)
    d2 = (a - b) ** 2
    if m is not None:
        d2 = d2[m]
    return float(d2.mean())


def psnr(a, b, data_range: float = 255.0, mask=None) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images)."""
    e = mse(a, b, mask)
    if e == 0:
        return math.inf
    return 10.0 * math.log10(data_range ** 2 / e)


def ssim_map(a, b, data_range: float = 255.0, sigma: float = 1.5) -> np.ndarray:
    """Per-pixel SSIM (Wang et al. 2004, Gaussian window, K1=0.01, K2=0.03), channel-averaged."""
    a, b = _pair(a, b)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    ksize = (11, 11)

    def blur(x):
        return cv2.GaussianBlur(x, ksize, sigma, borderType=cv2.BORDER_REFLECT)

    maps = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        mx, my = blur(x), blur(y)
        sxx = blur(x * x) - mx * mx
        syy = blur(y * y) - my * my
        sxy = blur(x * y) - mx * my
        num = (2 * mx * my + c1) * (2 * sxy + c2)
        den = (mx * mx + my * my + c1) * (sxx + syy + c2)
        maps.append(num / den)
    return np.mean(maps, axis=0)


def ssim(a, b, data_range: float = 255.0, mask=None) -> float:
    """Mean SSIM, over ``mask`` pixels when given (the window still sees their surroundings)."""
    s = ssim_map(a, b, data_range)
    m = _mask(mask, s.shape)
    return float(s[m].mean() if m is not None else s.mean())


def temporal_flicker(pred_frames, true_frames, mask=None) -> float:
    """Mean absolute difference between the frame-to-frame changes of ``pred`` and ``true``.

    ``pred_frames``/``true_frames``: sequences of equally shaped images (at least two). Zero
    when the prediction changes over time exactly as the truth does; flicker that the truth
    does not have raises it. ``mask`` (H, W) or (T, H, W) restricts it to those pixels.
    """
    p = np.asarray(pred_frames, np.float64)
    t = np.asarray(true_frames, np.float64)
    if p.shape != t.shape:
        raise ValueError(f"frame stacks differ: {p.shape} vs {t.shape}")
    if p.shape[0] < 2:
        raise ValueError("temporal_flicker needs at least two frames")
    d = np.abs(np.diff(p, axis=0) - np.diff(t, axis=0))
    if d.ndim == 4:
        d = d.mean(axis=3)
    if mask is not None:
        m = np.asarray(mask, bool)
        if m.ndim == 2:
            m = np.broadcast_to(m, d.shape)
        else:
            m = m[1:] & m[:-1]
        if not m.any():
            raise ValueError("mask selects no pixels")
        return float(d[m].mean())
    return float(d.mean())
