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


def fit_affine_torch(src, ref, mask, samples: int = 1 << 17, passes: int = 5, min_pixels: int = 64,
                     generator=None):
    """:func:`fit_affine` for batches of torch tensors, on a random subsample of the pixels.

    ``src``/``ref`` (B, H, W, C) or (H, W, C), ``mask`` (B, H, W) or (H, W) bool. ``samples``
    pixels per image are drawn uniformly (with replacement; every pixel when the image has no
    more than that) and those on ``mask`` enter the
    same robust least squares as :func:`fit_affine` (per channel gain/offset, refitted without
    residuals beyond 3 robust standard deviations). An image with fewer than ``min_pixels``
    mask pixels gets the identity (gain 1, offset 0). Returns (B, C, 2) (or (C, 2)) float64.
    No step depends on the data's values for its shape, so on a GPU nothing waits for it.
    """
    import torch

    squeeze = src.ndim == 3
    if squeeze:
        src, ref, mask = src[None], ref[None], mask[None]
    if src.shape != ref.shape:
        raise ValueError(f"colour matching needs equal shapes, got {tuple(src.shape)} and {tuple(ref.shape)}")
    b, h, w, c = src.shape
    n = h * w
    dev = src.device
    if n <= samples:  # every pixel once
        idx = torch.arange(n, device=dev).expand(b, n)
    else:
        idx = torch.randint(n, (b, samples), device=dev, generator=generator)
    take = lambda a: a.reshape(b, n, c).gather(1, idx[..., None].expand(-1, -1, c)).double()  # noqa: E731
    x, y = take(src), take(ref)
    wt = mask.reshape(b, n).gather(1, idx).double()[..., None].expand(-1, -1, c).clone()
    enough = mask.reshape(b, n).sum(1) >= min_pixels  # (B,)
    g = torch.ones((b, c), dtype=torch.float64, device=dev)
    o = torch.zeros((b, c), dtype=torch.float64, device=dev)
    done = torch.zeros((b, c), dtype=torch.bool, device=dev)
    for _ in range(passes):
        sw = wt.sum(1).clamp_min(1e-12)
        mx, my = (wt * x).sum(1) / sw, (wt * y).sum(1) / sw
        dx = x - mx[:, None]
        vx = (wt * dx * dx).sum(1) / sw
        cxy = (wt * dx * (y - my[:, None])).sum(1) / sw
        flat = vx < 1e-18
        g_new = torch.where(flat, torch.ones_like(vx), cxy / torch.where(flat, torch.ones_like(vx), vx))
        o_new = my - g_new * mx
        g, o = torch.where(done, g, g_new), torch.where(done, o, o_new)
        res = (g[:, None] * x + o[:, None] - y).abs()
        on = wt > 0
        med = torch.nanmedian(torch.where(on, res, torch.full_like(res, float("nan"))), dim=1).values
        keep = res <= torch.clamp(3.0 * 1.4826 * med, min=1e-6)[:, None]
        kept = (on & keep).sum(1)
        stop = (kept == on.sum(1)) | (kept < 16)
        wt = torch.where((done | stop)[:, None], wt, wt * keep)
        done = done | stop
    g = torch.where(enough[:, None], g, torch.ones_like(g))
    o = torch.where(enough[:, None], o, torch.zeros_like(o))
    out = torch.stack([g, o], -1)
    return out[0] if squeeze else out


def apply_affine_torch(image, coeffs, lo: float = 0.0, hi: float = 255.0):
    """``gain * image + offset`` per channel of (B, H, W, C) or (H, W, C) tensors, clipped to ``[lo, hi]``."""
    cf = coeffs.to(image.dtype)
    if image.ndim == 3:
        return (image * cf[:, 0] + cf[:, 1]).clamp(lo, hi)
    return (image * cf[:, None, None, :, 0] + cf[:, None, None, :, 1]).clamp(lo, hi)
