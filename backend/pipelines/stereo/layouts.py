"""Stereo frame layouts and the debug grid.

All functions take RGB images (H, W, 3), uint8 or float in [0, 255], and return uint8.
``sbs``: left | right (H, 2W); ``half-sbs``: both eyes squeezed to half width (H, W);
``tab``: left over right (2H, W); ``anaglyph``: red-cyan (H, W), ``dubois`` (least-squares
colour anaglyph, E. Dubois 2001) or ``simple`` (red from the left eye, green and blue from the
right). :func:`debug_grid` is a 2x2 of half-size panels: left, depth, hole mask, warped right.
"""
from __future__ import annotations

import cv2
import numpy as np

LAYOUTS = ("sbs", "half-sbs", "tab", "anaglyph")

# Dubois red-cyan matrices (E. Dubois, "A projection method to generate anaglyph stereo
# images", ICASSP 2001; rows: output R, G, B; columns: input R, G, B), applied in linear light.
DUBOIS_LEFT = np.array([[0.456, 0.500, 0.176],
                        [-0.040, -0.038, -0.016],
                        [-0.015, -0.021, -0.005]], np.float32)
DUBOIS_RIGHT = np.array([[-0.043, -0.088, -0.002],
                         [0.378, 0.734, -0.018],
                         [-0.072, -0.113, 1.226]], np.float32)


def _u8(img) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _check(left, right):
    if left.shape != right.shape or left.ndim != 3 or left.shape[2] != 3:
        raise ValueError(f"eyes must be equal RGB images, got {left.shape} and {right.shape}")


def anaglyph(left, right, mode: str = "dubois") -> np.ndarray:
    """Red-cyan anaglyph of an RGB pair."""
    left, right = _u8(left), _u8(right)
    _check(left, right)
    if mode == "simple":
        out = right.copy()
        out[..., 0] = left[..., 0]
        return out
    if mode != "dubois":
        raise ValueError(f"anaglyph mode must be dubois or simple, got {mode!r}")
    l = _srgb_to_linear(left)
    r = _srgb_to_linear(right)
    out = np.clip(l @ DUBOIS_LEFT.T + r @ DUBOIS_RIGHT.T, 0.0, 1.0)
    return _u8(_linear_to_srgb(out) * 255.0)


def _srgb_to_linear(img_u8) -> np.ndarray:
    c = img_u8.astype(np.float32) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c) -> np.ndarray:
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)


def compose(left, right, layout: str, anaglyph_mode: str = "dubois") -> np.ndarray:
    """One output frame of ``layout`` (one of :data:`LAYOUTS`)."""
    left, right = _u8(left), _u8(right)
    _check(left, right)
    h, w = left.shape[:2]
    if layout == "sbs":
        return np.concatenate([left, right], axis=1)
    if layout == "half-sbs":
        half = max(1, w // 2)
        squeeze = [cv2.resize(e, (half, h), interpolation=cv2.INTER_AREA) for e in (left, right)]
        return np.concatenate(squeeze, axis=1)
    if layout == "tab":
        return np.concatenate([left, right], axis=0)
    if layout == "anaglyph":
        return anaglyph(left, right, anaglyph_mode)
    raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")


def colourise_disparity(disparity, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Disparity (H, W) as an RGB turbo colour map (near = red); NaN is black."""
    d = np.asarray(disparity, np.float32)
    finite = np.isfinite(d)
    if lo is None or hi is None:
        vals = d[finite]
        lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
    n = np.clip((np.where(finite, d, lo) - lo) / max(hi - lo, 1e-6), 0, 1)
    bgr = cv2.applyColorMap((n * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    rgb = bgr[..., ::-1].copy()
    rgb[~finite] = 0
    return rgb


def debug_grid(left, disparity, hole, warped_right, hole_colour=(255, 0, 255)) -> np.ndarray:
    """2x2 grid at the input size: left | disparity, hole mask | warped right (holes in magenta)."""
    left = _u8(left)
    h, w = left.shape[:2]
    hole = np.asarray(hole, bool)
    mask = np.repeat((hole * 255).astype(np.uint8)[..., None], 3, axis=2)
    warped = _u8(warped_right).copy()
    warped[hole] = hole_colour
    ph, pw = h // 2, w // 2
    panels = [cv2.resize(p, (pw, ph), interpolation=cv2.INTER_AREA if p is not mask else cv2.INTER_NEAREST)
              for p in (left, colourise_disparity(disparity), mask, warped)]
    top = np.concatenate(panels[:2], axis=1)
    bottom = np.concatenate(panels[2:], axis=1)
    return np.concatenate([top, bottom], axis=0)
