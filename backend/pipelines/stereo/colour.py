"""Left/right colour matching.

A synthesised right eye can drift in colour from the left one: an inpainting model's fill, or
a splat render next to real footage. :func:`fit_affine` fits a per-channel gain and offset
from pixels that show the same surface in both (least squares, refitted without outliers:
residuals beyond 3 robust standard deviations) and :func:`match_colors` applies it.
"""
from __future__ import annotations

import numpy as np


def fit_affine(src, ref, mask=None, passes: int = 5) -> np.ndarray:
    """Per-channel ``(gain, offset)`` (C, 2) so that ``gain * src + offset ~= ref`` on ``mask``.

    Up to ``passes`` refits, each without the pixels whose residual exceeds 3 robust standard
    deviations (1.4826 * median absolute residual). Channels with no spread keep gain 1 and
    match the mean.
    """
    s = np.asarray(src, np.float64)
    r = np.asarray(ref, np.float64)
    if s.shape != r.shape:
        raise ValueError(f"colour matching needs equal shapes, got {s.shape} and {r.shape}")
    if s.ndim == 2:
        s, r = s[..., None], r[..., None]
    m = np.ones(s.shape[:2], bool) if mask is None else np.asarray(mask, bool)
    if m.sum() < 16:
        raise ValueError("colour matching needs at least 16 corresponding pixels")
    out = np.zeros((s.shape[2], 2))
    for c in range(s.shape[2]):
        x, y = s[..., c][m], r[..., c][m]
        for _ in range(passes):
            if x.std() < 1e-9:
                g, o = 1.0, float(y.mean() - x.mean())
            else:
                g, o = np.polyfit(x, y, 1)
            res = np.abs(g * x + o - y)
            keep = res <= max(3.0 * 1.4826 * float(np.median(res)), 1e-6)
            if keep.all() or keep.sum() < 16:
                break
            x, y = x[keep], y[keep]
        out[c] = g, o
    return out


def apply_affine(image, coeffs, lo: float = 0.0, hi: float = 255.0, mask=None) -> np.ndarray:
    """``gain * image + offset`` per channel, clipped to ``[lo, hi]``; only on ``mask`` when given."""
    img = np.asarray(image, np.float32)
    squeeze = img.ndim == 2
    x = img[..., None] if squeeze else img
    y = x * coeffs[:, 0].astype(np.float32) + coeffs[:, 1].astype(np.float32)
    y = np.clip(y, lo, hi)
    if mask is not None:
        y = np.where(np.asarray(mask, bool)[..., None], y, x)
    return y[..., 0] if squeeze else y


def match_colors(src, ref, mask=None, apply_mask=None, lo: float = 0.0, hi: float = 255.0) -> np.ndarray:
    """Colour-correct ``src`` towards ``ref``: fit on ``mask``, apply on ``apply_mask`` (default all)."""
    return apply_affine(src, fit_affine(src, ref, mask), lo, hi, apply_mask)
