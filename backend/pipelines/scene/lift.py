"""Depth to Gaussians and back: lifting pixels, far (sky) depth, aligning a new view's depth
to what the splats already show, and the masks of the warp-and-inpaint step.

Cameras are Blender ``matrix_world`` (looking down local -Z, +Y up) with the principal point at
the image centre; depth is measured along the viewing axis; pixel (0, 0) is the top-left
corner of the top-left pixel, so pixel centres sit at +0.5.
"""
from __future__ import annotations

import numpy as np

from ..splats_io import SH_C0, Splats

#: Far depth for pixels without one (sky): the 95th percentile of the valid depth times this.
FAR_FACTOR = 1.2
FAR_PERCENTILE = 95.0


def far_filled(depth: np.ndarray) -> tuple[np.ndarray, float]:
    """``depth`` with every invalid (NaN, inf, <= 0) pixel and every pixel beyond the far depth
    (95th percentile of the valid depth x 1.2) set to the far depth; returns it and the far
    depth. Raises ValueError when no pixel has a depth."""
    d = np.asarray(depth, np.float64)
    ok = np.isfinite(d) & (d > 0)
    if ok.sum() < 16:
        raise ValueError("the depth map has no valid pixels")
    far = float(np.percentile(d[ok], FAR_PERCENTILE) * FAR_FACTOR)
    return np.where(ok, np.minimum(d, far), far).astype(np.float32), far


def pixel_rays(view) -> np.ndarray:
    """(H, W, 3) world directions with unit depth along the viewing axis for every pixel centre."""
    w, h = int(view.width), int(view.height)
    gx, gy = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    d_cam = np.stack([(gx - w / 2) / view.focal, -(gy - h / 2) / view.focal, -np.ones_like(gx)], -1)
    return d_cam @ np.asarray(view.c2w, np.float64)[:3, :3].T


def lift(rgb: np.ndarray, depth: np.ndarray, view, mask: np.ndarray | None = None,
         footprint: float = 0.6, opacity: float = 0.98) -> Splats:
    """One isotropic Gaussian per pixel of ``mask`` (default all) at its depth: standard
    deviation ``footprint`` pixels at that depth, the pixel's colour, ``opacity``."""
    m = np.ones(depth.shape, bool) if mask is None else np.asarray(mask, bool)
    m &= np.isfinite(depth) & (depth > 0)
    d = np.asarray(depth, np.float64)[m]
    pts = pixel_rays(view)[m] * d[:, None] + np.asarray(view.c2w, np.float64)[:3, 3]
    n = len(pts)
    sigma = footprint * d / view.focal
    col = np.asarray(rgb, np.float64)[m] / 255.0
    quats = np.zeros((n, 4))
    quats[:, 0] = 1.0
    return Splats(means=pts, scales=np.log(sigma)[:, None].repeat(3, 1), quats=quats,
                  opacities=np.full(n, np.log(opacity / (1 - opacity))), sh0=(col - 0.5) / SH_C0)


def concat(a: Splats, b: Splats) -> Splats:
    k = max(a.shN.shape[1], b.shN.shape[1])
    pad = lambda s: np.concatenate([s.shN, np.zeros((len(s), k - s.shN.shape[1], 3), np.float32)], 1)  # noqa: E731
    return Splats(np.concatenate([a.means, b.means]), np.concatenate([a.scales, b.scales]),
                  np.concatenate([a.quats, b.quats]), np.concatenate([a.opacities, b.opacities]),
                  np.concatenate([a.sh0, b.sh0]), np.concatenate([pad(a), pad(b)]))


def align_depth(new: np.ndarray, ref: np.ndarray, overlap: np.ndarray, passes: int = 4,
                min_pixels: int = 64) -> tuple[np.ndarray, float, float]:
    """``new`` depth brought onto ``ref`` by a scale and shift of inverse depth (least squares
    on the ``overlap`` pixels, refitted without residuals beyond 3 robust standard deviations):
    ``1 / aligned = a / new + b``. Returns ``(aligned, a, b)``; with too small an overlap only
    the median ratio (``b = 0``)."""
    inv_new = 1.0 / np.asarray(new, np.float64)
    inv_ref = 1.0 / np.asarray(ref, np.float64)
    m = np.asarray(overlap, bool) & np.isfinite(inv_new) & np.isfinite(inv_ref) & (inv_new > 0) & (inv_ref > 0)
    if m.sum() < min_pixels:
        a = float(np.median(inv_ref[m] / inv_new[m])) if m.any() else 1.0
        b = 0.0
    else:
        x, y = inv_new[m], inv_ref[m]
        for _ in range(passes):
            a, b = np.polyfit(x, y, 1)
            res = np.abs(a * x + b - y)
            keep = res <= max(3.0 * 1.4826 * float(np.median(res)), 1e-12)
            if keep.all() or keep.sum() < min_pixels:
                break
            x, y = x[keep], y[keep]
        a, b = float(a), float(b)
        if a <= 0:  # a degenerate fit (flat overlap): the ratio alone
            a, b = float(np.median(inv_ref[m] / inv_new[m])), 0.0
    inv = a * inv_new + b
    with np.errstate(divide="ignore", invalid="ignore"):
        aligned = np.where(inv > 0, 1.0 / inv, np.nan)
    return aligned.astype(np.float32), a, b


def depth_edges(depth: np.ndarray, jump: float = 0.05) -> np.ndarray:
    """Pixels next to a depth discontinuity: a relative depth change over ``jump`` to a
    4-neighbour (pixels without depth have no edges)."""
    d = np.asarray(depth, np.float64)
    ld = np.where(np.isfinite(d) & (d > 0), np.log(np.where(d > 0, d, 1.0)), np.nan)
    e = np.zeros(d.shape, bool)
    for axis in (0, 1):
        g = np.abs(np.diff(ld, axis=axis))
        bad = g > jump  # False where either side has no depth
        if axis == 0:
            e[1:] |= bad
            e[:-1] |= bad
        else:
            e[:, 1:] |= bad
            e[:, :-1] |= bad
    return e


def inpaint_mask(alpha: np.ndarray, depth: np.ndarray, margin: int = 2, min_alpha: float = 0.7) -> np.ndarray:
    """Pixels to generate in a rendered view: where the splats do not cover it (alpha under
    ``min_alpha``), grown by ``margin`` px, and a ``margin`` px band on the render's depth edges
    (stretched splats between foreground and background)."""
    import cv2

    hole = np.asarray(alpha) < min_alpha
    if margin <= 0:
        return hole
    k = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    grown = cv2.dilate(hole.astype(np.uint8), k).astype(bool)
    edges = depth_edges(np.where(hole, np.nan, depth))
    band = cv2.dilate(edges.astype(np.uint8), k).astype(bool)
    return grown | band
