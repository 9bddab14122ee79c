"""Depth to screen disparity: interaxial, convergence plane (sensor shift) and disparity budget.

Convention: the right camera sits ``interaxial`` to the right of the left one (along the
camera's +x), both parallel; convergence is a horizontal sensor shift, so a point at depth Z
lands at ``x_right = x_left - d`` with ``d = f * B * (1/Z - 1/Z_c)`` pixels. Points nearer than
the convergence plane have d > 0 (in front of the screen), farther ones d < 0, and the plane
itself has d = 0.
"""
from __future__ import annotations

import numpy as np

from backend.pipelines.stereo.rows import nearest_valid_columns, take_columns


def disparity_from_depth(depth, focal_px: float, interaxial: float, convergence: float | None = None):
    """Per-pixel disparity in pixels from metric depth Z (same unit as ``interaxial``).

    ``convergence`` is the distance of the zero-disparity plane; ``None`` means infinity
    (parallel cameras, no shift). Infinite depth (sky) gives the full shift ``-f*B/Z_c``;
    non-positive or NaN depth gives NaN.
    """
    if focal_px <= 0 or not np.isfinite(focal_px):
        raise ValueError(f"focal_px must be positive, got {focal_px}")
    if interaxial < 0:
        raise ValueError(f"interaxial must be >= 0, got {interaxial}")
    if convergence is not None and not convergence > 0:
        raise ValueError(f"convergence distance must be positive, got {convergence}")
    z = np.asarray(depth, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(z > 0, 1.0 / z, np.nan).astype(np.float32)
    shift = 0.0 if convergence is None else 1.0 / convergence
    return (focal_px * interaxial) * (inv - np.float32(shift))


def disparity_from_relative(inv_depth, max_disparity: float, convergence_fraction: float = 0.5,
                            lo: float | None = None, hi: float | None = None):
    """Disparity from relative inverse depth (a monocular model's output: larger = nearer).

    The range ``[lo, hi]`` of ``inv_depth`` (default: its 1st and 99th percentiles) maps
    linearly onto ``[0, 1]``; the convergence plane sits at ``convergence_fraction`` of that
    range and the nearest end gets ``max_disparity`` * (1 - convergence_fraction) px, so the
    total disparity span equals ``max_disparity``.
    """
    v = np.asarray(inv_depth, np.float32)
    if lo is None or hi is None:
        finite = v[np.isfinite(v)]
        if finite.size == 0:
            raise ValueError("inverse depth has no finite value")
        lo, hi = np.percentile(finite, [1.0, 99.0])
    span = max(float(hi) - float(lo), 1e-12)
    n = (v - np.float32(lo)) / np.float32(span)
    return np.float32(max_disparity) * (n - np.float32(convergence_fraction))


def budget_scale(disparity, max_disparity: float, percentile: float = 99.5) -> float:
    """Factor (<= 1) that keeps the ``percentile`` of |disparity| within ``max_disparity`` px."""
    if not max_disparity > 0:
        raise ValueError(f"max_disparity must be positive, got {max_disparity}")
    d = np.abs(np.asarray(disparity, np.float32))
    d = d[np.isfinite(d)]
    if d.size == 0:
        return 1.0
    peak = float(np.percentile(d, percentile))
    return 1.0 if peak <= max_disparity else max_disparity / peak


def apply_budget(disparity, max_disparity: float, scale: float | None = None):
    """Scale disparity by ``scale`` (default: :func:`budget_scale`), then clip to +-``max_disparity``.

    Scaling is a smaller interaxial: it keeps the convergence plane at zero disparity.
    """
    s = budget_scale(disparity, max_disparity) if scale is None else float(scale)
    d = np.asarray(disparity, np.float32) * np.float32(s)
    return np.clip(d, -max_disparity, max_disparity)


def complete_disparity(disparity, valid=None):
    """Fill unknown disparity (NaN, or ``~valid``) with the farther of its row neighbours.

    Unknown pixels of a disparity map are mostly occluded background, so the smaller of the
    nearest known values to the left and right is the better guess. Rows with no known value
    get the map's minimum.
    """
    d = np.asarray(disparity, np.float32)
    ok = np.isfinite(d) if valid is None else (np.asarray(valid, bool) & np.isfinite(d))
    if ok.all():
        return d.copy()
    if not ok.any():
        raise ValueError("disparity map has no known value")
    h, w = d.shape
    left, right = nearest_valid_columns(ok)
    lv = take_columns(d, np.clip(left, 0, w - 1))
    rv = take_columns(d, np.clip(right, 0, w - 1))
    lv = np.where(left >= 0, lv, np.inf)
    rv = np.where(right < w, rv, np.inf)
    fill = np.minimum(lv, rv)
    fill = np.where(np.isfinite(fill), fill, float(d[ok].min()))
    return np.where(ok, d, fill).astype(np.float32)
