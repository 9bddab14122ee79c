"""Cameras from a multi-view pointmap network, window by window (``poses --method learned``).

The network (:mod:`backend.models.pointmaps`) maps a window of T frames to one pointmap per
frame in the coordinates of the window's first frame. The clip is cut into causal windows: the
first holds frames 0..T-1; each later one starts with K keyframes carried over from earlier
windows (the most recent first: it is the window's coordinate frame) and continues with T-K new
frames. The last new frame of every window (and frame 0) becomes a keyframe.

Windows are chained through their keyframes: a keyframe's pointmap from the window that first
saw it is kept in the global frame (the first frame's camera, the first window's scale); in a
later window the same keyframe's pointmap fixes, by a weighted similarity fit (Umeyama) over its
pixels, the similarity from that window's coordinates to the global ones.

The focal length is fitted on every window's first frame, whose pointmap is in its own camera:
``u - cx = f X / Z`` and ``v - cy = f Y / Z`` over its pixels (the median over windows is
used). Each frame's pose is then a PnP of its global pointmap against the pixel grid (pycolmap,
LO-RANSAC). Output that is not a pointmap of the frames (a wrong or untrained network) is
caught by the focal fit's residual and by PnP failing on most frames: JobError
``bad_model_output`` with one line.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pycolmap

from backend.progress import JobError

from .register import pnp_options

#: Correspondences kept per frame for PnP (an even subsample of the pointmap grid).
PNP_POINTS = 3000
#: The focal fit's residual (fraction of the image's longer side) above which a pointmap is
#: not a camera's view of the frame.
MAX_FOCAL_RESIDUAL = 0.02


@dataclass
class FramePoints:
    """One frame's pointmap samples in the global frame: footage pixels, points, weights
    (float32), colours (uint8)."""

    xy: np.ndarray
    xyz: np.ndarray
    weight: np.ndarray
    rgb: np.ndarray


@dataclass
class WindowResult:
    frames: dict[int, FramePoints] = field(default_factory=dict)
    focals: list[tuple[float, float]] = field(default_factory=list)  # (f, residual px) per window
    n_windows: int = 0


def pixel_grid(h: int, w: int, width: int, height: int) -> np.ndarray:
    """Footage pixel (pixel-corner origin) of each cell centre of an (h, w) grid: (h, w, 2)."""
    u = (np.arange(w) + 0.5) * width / w
    v = (np.arange(h) + 0.5) * height / h
    return np.stack(np.meshgrid(u, v), -1)


def fit_focal(points: np.ndarray, conf: np.ndarray, grid: np.ndarray,
              centre: tuple[float, float]) -> tuple[float, float]:
    """Least-squares focal length (px) of a pointmap in its own camera, and the RMS residual
    (px) of the fit; (nan, inf) when fewer than 10 points lie in front of the camera."""
    p = points.reshape(-1, 3).astype(np.float64)
    w = conf.reshape(-1).astype(np.float64)
    g = grid.reshape(-1, 2)
    ok = np.isfinite(p).all(1) & (p[:, 2] > 1e-9) & (w > 0)
    if ok.sum() < 10:
        return float("nan"), float("inf")
    a, b = p[ok, 0] / p[ok, 2], p[ok, 1] / p[ok, 2]
    du, dv, w = g[ok, 0] - centre[0], g[ok, 1] - centre[1], w[ok]
    f = float(np.sum(w * (a * du + b * dv)) / max(np.sum(w * (a * a + b * b)), 1e-300))
    res = np.sqrt(np.sum(w * ((du - f * a) ** 2 + (dv - f * b) ** 2)) / np.sum(w))
    return f, float(res)


def similarity(src: np.ndarray, dst: np.ndarray, weight: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted Umeyama fit ``dst ~ s R src + t`` -> (s, R, t)."""
    w = weight / weight.sum()
    ms, md = w @ src, w @ dst
    a, b = src - ms, dst - md
    cov = (b * w[:, None]).T @ a
    u, d, vt = np.linalg.svd(cov)
    e = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[2, 2] = -1
    r = u @ e @ vt
    var = float(w @ np.sum(a * a, 1))
    s = float(np.trace(np.diag(d) @ e) / max(var, 1e-300))
    return s, r, md - s * r @ ms


def robust_similarity(src, dst, weight):
    """:func:`similarity` fitted again without the points over 3x the median residual."""
    s, r, t = similarity(src, dst, weight)
    res = np.linalg.norm(dst - (s * src @ r.T + t), axis=1)
    keep = res <= 3.0 * max(np.median(res), 1e-12)
    if keep.sum() >= 10 and not keep.all():
        s, r, t = similarity(src[keep], dst[keep], weight[keep])
    return s, r, t


def _valid(pts: np.ndarray, conf: np.ndarray) -> np.ndarray:
    return np.isfinite(pts).all(-1) & np.isfinite(conf) & (conf > 0)


def run_windows(model, frames, n: int, width: int, height: int, progress=None) -> WindowResult:
    """Run ``model`` over ``frames`` (an iterator of RGB uint8 frames, any size with the
    footage's aspect) in causal windows; pointmap samples of every frame in the global frame."""
    T, K = int(model.window), int(model.memory)
    h, w = model.input_size
    grid = pixel_grid(h, w, width, height)
    step = max(1, int(np.ceil(np.sqrt(h * w / PNP_POINTS))))
    sub = (slice(step // 2, None, step), slice(step // 2, None, step))
    keys: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (pos, rgb, global pts, conf)
    out = WindowResult()
    pending: list[tuple[int, np.ndarray]] = []
    windows_total = 1 + max(0, -(-(n - T) // (T - K)))

    def small(rgb):
        import cv2

        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if rgb.shape[:2] != (h, w) else rgb

    def flush():
        memory = keys[::-1][:K]  # the newest keyframe first: the window's coordinate frame
        items = [(k[0], k[1]) for k in memory] + pending
        pad = T - len(items)
        batch = items + [items[-1]] * pad
        pts, conf = model([b[1] for b in batch], [b[0] for b in batch])
        pts = np.asarray(pts, np.float64)[: len(items)]
        conf = np.asarray(conf, np.float64)[: len(items)]
        if pts.shape != (len(items), h, w, 3) or conf.shape != (len(items), h, w):
            raise JobError(f"learned pose model returned {pts.shape} pointmaps for a window of "
                           f"{len(items)} frames at {w}x{h}", "bad_model_output")
        bad = ~np.isfinite(pts).all()
        if bad:
            raise JobError(f"learned pose model returned non-finite pointmaps (window "
                           f"{out.n_windows}, frames {items[0][0]}-{items[-1][0]})", "bad_model_output")
        out.focals.append(fit_focal(pts[0], conf[0], grid, (width / 2.0, height / 2.0)))
        if memory:
            src, dst, wt = [], [], []
            for k, (_, _, gpts, gconf) in enumerate(memory):
                ok = _valid(pts[k], conf[k]) & _valid(gpts, gconf)
                src.append(pts[k][ok])
                dst.append(gpts[ok])
                wt.append(np.minimum(conf[k][ok], gconf[ok]))
            src, dst, wt = np.concatenate(src), np.concatenate(dst), np.concatenate(wt)
            if len(src) < 10:
                raise JobError(f"learned pose model: window {out.n_windows} shares no usable "
                               "points with its keyframes", "bad_model_output")
            s, r, t = robust_similarity(src, dst, wt)
        else:
            s, r, t = 1.0, np.eye(3), np.zeros(3)
        glob = s * pts @ r.T + t
        for k, (pos, rgb) in enumerate(items):
            if k < len(memory):
                continue
            g, c = glob[k][sub], conf[k][sub]
            ok = _valid(g, c)
            out.frames[pos] = FramePoints(grid[sub][ok].astype(np.float32), g[ok].astype(np.float32),
                                          c[ok].astype(np.float32), rgb[sub][ok])
        newest = len(items) - 1
        if not keys:
            keys.append((items[0][0], items[0][1], glob[0], conf[0]))
        if newest >= len(memory) and items[newest][0] != keys[-1][0]:
            keys.append((items[newest][0], items[newest][1], glob[newest], conf[newest]))
        del keys[:-K]  # only the newest K are ever used again
        out.n_windows += 1
        pending.clear()
        if progress is not None:
            progress.update(min(1.0, out.n_windows / windows_total),
                            f"pointmaps: window {out.n_windows}/{windows_total}")

    for pos, rgb in enumerate(frames):
        pending.append((pos, small(rgb)))
        if len(pending) == (T if not keys else T - min(K, len(keys))):
            flush()
    if pending:
        flush()
    return out


def choose_focal(result: WindowResult, width: int, height: int) -> float:
    """Median of the windows' focal fits; JobError when the fits say the output is not a
    pointmap of the frames."""
    fs = np.array([f for f, _ in result.focals])
    res = np.array([r for _, r in result.focals])
    good = np.isfinite(fs) & (fs > 0) & (res < MAX_FOCAL_RESIDUAL * max(width, height))
    if good.sum() < max(1, 0.5 * len(fs)):
        worst = float(np.nanmedian(np.where(np.isfinite(res), res, np.nan))) if np.isfinite(res).any() else float("inf")
        raise JobError(f"learned pose model output is not a pointmap of the frames (the focal fit "
                       f"leaves {worst:.1f} px in {int((~good).sum())} of {len(fs)} windows)",
                       "bad_model_output")
    f = float(np.median(fs[good]))
    if not 0.05 * max(width, height) < f < 50.0 * max(width, height):
        raise JobError(f"learned pose model implies an implausible focal length of {f:.1f} px for "
                       f"{width}x{height} footage", "bad_model_output")
    return f


def frame_poses(result: WindowResult, focal: float, width: int, height: int,
                max_error_px: float) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    """OpenCV camera-to-world (4x4, global frame) and the RMS residual (px) of every frame
    PnP can place on its pointmap."""
    camera = pycolmap.Camera(model="SIMPLE_PINHOLE", width=int(width), height=int(height),
                             params=[focal, width / 2.0, height / 2.0])
    est, ref = pnp_options(max_error_px)
    c2w, errors = {}, {}
    for pos, fp in result.frames.items():
        if len(fp.xy) < 12:
            continue
        got = pycolmap.estimate_and_refine_absolute_pose(
            np.ascontiguousarray(fp.xy, np.float64), np.ascontiguousarray(fp.xyz, np.float64),
            camera, est, ref)
        if got is None or int(got["num_inliers"]) < max(12, 0.5 * len(fp.xy)):
            continue
        pose = got["cam_from_world"]
        m = np.vstack([pose.matrix(), [0, 0, 0, 1]])
        pc = fp.xyz @ m[:3, :3].T + m[:3, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            proj = focal * pc[:, :2] / pc[:, 2:3] + [width / 2.0, height / 2.0]
        inl = np.asarray(got["inlier_mask"], bool)
        errors[pos] = float(np.sqrt(np.mean(np.sum((proj[inl] - fp.xy[inl]) ** 2, 1))))
        c2w[pos] = np.linalg.inv(m)
    return c2w, errors
