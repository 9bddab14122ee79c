"""Temporal hole filling: disoccluded background taken from neighbouring frames.

A hole in the warped right eye at frame t is background hidden behind a nearer object in the
left view at t. When that object or the camera moves, the same background is often visible
in the left view of a neighbouring frame s. For every hole pixel this module

1. takes the background disparity ``d_bg`` of the hole (its farther bounding pixel),
2. finds where the hidden point lies in the left view at t: ``x_l = x_r + d_bg``,
3. moves it to frame s with the optical flow of the visible background next to the hole
   (dense DIS flow from left_t to left_s; flow is read on visible background only, where
   it is reliable, never inside the occluded region), and
4. samples left_s there, accepting the sample only when left_s's disparity at that point
   matches ``d_bg`` within ``z_tol`` (the point is background there too, not the occluder).

Nearer frames are tried first; what no neighbour sees stays a hole for the spatial fill.
"""
from __future__ import annotations

import cv2
import numpy as np

from backend.pipelines.stereo.fill import background_side
from backend.pipelines.stereo.rows import take_columns


def _gray(img, scale: float) -> np.ndarray:
    a = np.asarray(img, np.float32)
    if a.ndim == 3:
        a = a.mean(axis=2)
    lo, hi = float(a.min()), float(a.max())
    u8 = np.clip((a - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)
    if scale != 1.0:
        u8 = cv2.resize(u8, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return u8


def optical_flow(src, dst, scale: float | None = None) -> np.ndarray:
    """Dense flow (H, W, 2) in full-resolution pixels from image ``src`` to image ``dst`` (DIS, OpenCV).

    ``scale`` resizes both images first (default: to at most 960 px wide). Both images are
    normalised together so exposure is compared fairly.
    """
    h, w = np.asarray(src).shape[:2]
    if scale is None:
        scale = min(1.0, 960.0 / w)
    both = np.concatenate([np.asarray(src, np.float32), np.asarray(dst, np.float32)], axis=1)
    g = _gray(both, 1.0)
    a, b = np.ascontiguousarray(g[:, :w]), np.ascontiguousarray(g[:, w:])
    if scale != 1.0:
        a = cv2.resize(a, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(a, b, None)
    if scale != 1.0:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / scale
    return flow.astype(np.float32)


def sample_points(img, xs, ys, interpolation=cv2.INTER_LINEAR) -> np.ndarray:
    """``img`` sampled at points (index coordinates), NaN outside ``[0, W-1] x [0, H-1]``.

    Returns (N,) or (N, C) float32. Works for any number of points (OpenCV's maps are
    limited to 32767 columns, so the points are laid out in rows).
    """
    a = np.asarray(img, np.float32)
    n = len(xs)
    cols = 1024
    rows = max(1, -(-n // cols))
    mx = np.full(rows * cols, -1e6, np.float32)
    my = np.full(rows * cols, -1e6, np.float32)
    mx[:n], my[:n] = xs, ys
    out = cv2.remap(a, mx.reshape(rows, cols), my.reshape(rows, cols), interpolation,
                    borderMode=cv2.BORDER_REPLICATE)
    out = out.reshape(rows * cols, *a.shape[2:])[:n]
    h, w = a.shape[:2]
    outside = ~((xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1))
    out[outside] = np.nan
    return out


def temporal_fill(right, hole, z, left_t, neighbours, z_tol: float = 1.5, flow_scale: float | None = None,
                  margin: int = 6, photo_tol: float = 0.05):
    """Fill ``hole`` pixels of the warped ``right`` eye (H, W, C) from neighbouring frames.

    ``z`` is the warped disparity (z-buffer) of ``right``; ``left_t`` the left image at this
    frame; ``neighbours`` a sequence of ``(left_s, disparity_s)`` pairs, nearest first.
    The flow read at the background edge is checked photometrically: the edge pixel of
    left_t must match left_s at the flowed position within ``photo_tol`` of the image's value
    range, otherwise that neighbour is not used for the pixel.
    Returns ``(image, remaining_hole, filled_count)``.
    """
    out = np.array(right, np.float32, copy=True)
    hole = np.asarray(hole, bool).copy()
    if not hole.any() or not neighbours:
        return out, hole, 0
    h, w = hole.shape
    z = np.asarray(z, np.float32)
    col, exists = background_side(hole, z, margin=0)
    d_bg = take_columns(z, col)
    # column of visible background (in the left view at t) whose motion the hidden point shares
    col_in = np.where(col > np.arange(w)[None], col + margin, col - margin)
    col_in = np.clip(col_in, 0, w - 1)
    ok_in = take_columns(~hole, col_in)
    col_in = np.where(ok_in, col_in, col)
    ys = np.broadcast_to(np.arange(h)[:, None], (h, w))
    xl_edge = take_columns(np.broadcast_to(np.arange(w, dtype=np.float32)[None], (h, w)), col_in) + \
        take_columns(z, col_in)
    x_hidden = np.arange(w, dtype=np.float32)[None] + d_bg
    lt = np.asarray(left_t, np.float32)
    value_range = max(float(lt.max() - lt.min()), 1e-6)
    filled = 0
    for left_s, disp_s in neighbours:
        todo = hole & exists
        if not todo.any():
            break
        flow = optical_flow(left_t, left_s, flow_scale)
        yy, xx = ys[todo], np.clip(np.rint(xl_edge[todo]), 0, w - 1).astype(np.int64)
        u, v = flow[yy, xx, 0], flow[yy, xx, 1]
        src = np.asarray(left_s, np.float32)
        ex, ey = (xx + u).astype(np.float32), (yy + v).astype(np.float32)
        edge_s = sample_points(src, ex, ey).reshape(len(ex), -1)
        edge_t = lt[yy, xx].reshape(len(ex), -1)
        photo_ok = np.abs(edge_s - edge_t).max(axis=1) <= photo_tol * value_range
        mx = (x_hidden[todo] + u).astype(np.float32)
        my = (yy + v).astype(np.float32)
        sample = sample_points(src, mx, my)
        ds = sample_points(disp_s, mx, my, cv2.INTER_NEAREST)
        inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        good = inside & photo_ok & (np.abs(ds - d_bg[todo]) <= z_tol)
        channels = out.shape[2] if out.ndim == 3 else 1
        sample = sample.reshape(len(mx), channels)
        good &= np.isfinite(sample).all(axis=1)
        idx = np.flatnonzero(todo.ravel())[good]
        out.reshape(-1, channels)[idx] = sample[good]
        hole.ravel()[idx] = False
        filled += int(good.sum())
    return out, hole, filled
