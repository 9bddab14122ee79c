"""Automatic metric scale of a solve from a monocular metric-depth model.

A camera solve is right up to one scale factor. A metric-depth model (``weights/depth/``, see
:mod:`backend.models.depth`) predicts, for a frame, the distance in metres of every pixel along
the viewing axis; the solve gives the same distance in its own units for every sparse point the
frame sees. Their ratio is the scale, once per point: the estimate is the median of the ratios
over the points of several frames, after rejecting points whose ratio is far from it (points
hidden in that frame behind nearer surfaces, samples across depth edges).

Entry points (for the scale source of a solve):

- :func:`estimate_metric_scale` — a solution in the Blender world (:class:`PoseSolution`),
  its input video/folder and a depth model -> :class:`MetricScale`. ``scale`` multiplies the
  solution's lengths (scale the world about its origin: the ground stays z = 0). Use it when
  ``backend.models.depth.has_metric_model(weights_dir)`` is true, with
  ``backend.models.depth.load_depth_model(weights_dir, require_metric=True)``.
- :func:`scale_from_frames` — the same from frames already in memory.
- :func:`scale_from_samples` — the statistics alone, from per-frame (metric, solved) depth pairs.

``MetricScale.uncertainty`` is the relative one-sigma uncertainty of ``scale``: the spread of the
per-frame estimates over the square root of the number of frames (a model's error is largely a
per-frame scale error) and never less than the per-point spread over the square root of the
number of points. ``spread`` is the per-point robust relative spread (1.4826 x MAD of the log
ratios).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.progress import JobError

#: Relative deviation from the running estimate beyond which a point is an outlier (at least;
#: three robust sigmas when the spread is larger).
MIN_REJECT = 0.15
MIN_SAMPLES = 20
#: A per-point spread (log ratio) above this means the model's depths do not follow the solve's.
MAX_SPREAD = 0.5


@dataclass
class MetricScale:
    scale: float
    spread: float
    uncertainty: float
    n_points: int
    n_frames: int
    frame_scales: list[float] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)

    def as_stats(self) -> dict:
        """Plain values for a solve's stats."""
        return {"metric_scale": round(self.scale, 6),
                "metric_scale_uncertainty": round(self.uncertainty, 6),
                "metric_scale_spread": round(self.spread, 6),
                "metric_scale_points": self.n_points, "metric_scale_frames": self.frames}


def _mad(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if len(x) else 0.0


def scale_from_samples(metric: Iterable[np.ndarray], solved: Iterable[np.ndarray],
                       frames: list[int] | None = None) -> MetricScale:
    """Scale = robust median of ``metric / solved`` over all samples (one array pair per frame;
    non-finite or non-positive entries are ignored). Raises JobError ``scale_failed`` when fewer
    than :data:`MIN_SAMPLES` samples remain."""
    logs, frame_of = [], []
    for k, (m, s) in enumerate(zip(metric, solved)):
        m = np.asarray(m, np.float64).ravel()
        s = np.asarray(s, np.float64).ravel()
        ok = np.isfinite(m) & np.isfinite(s) & (m > 0) & (s > 0)
        logs.append(np.log(m[ok] / s[ok]))
        frame_of.append(np.full(int(ok.sum()), k))
    n_in = len(logs)
    logs = np.concatenate(logs) if logs else np.zeros(0)
    frame_of = np.concatenate(frame_of) if frame_of else np.zeros(0, int)
    if len(logs) < MIN_SAMPLES:
        raise JobError(f"metric scale: only {len(logs)} tracked points have a predicted depth "
                       f"(need {MIN_SAMPLES})", "scale_failed")
    keep = np.ones(len(logs), bool)
    centre = float(np.median(logs))
    for _ in range(3):
        sigma = _mad(logs[keep])
        keep = np.abs(logs - centre) <= max(3.0 * sigma, np.log1p(MIN_REJECT))
        centre = float(np.median(logs[keep]))
    if keep.sum() < MIN_SAMPLES:
        raise JobError(f"metric scale: predicted and solved depths disagree (only {int(keep.sum())}"
                       f" consistent points)", "scale_failed")
    spread = _mad(logs[keep])
    if spread > MAX_SPREAD:
        raise JobError(f"metric scale: predicted and solved depths disagree (ratios spread "
                       f"{100 * spread:.0f} %)", "scale_failed")
    per_frame = [float(np.median(logs[keep & (frame_of == k)])) for k in range(n_in)
                 if (keep & (frame_of == k)).sum() >= 5]
    n = int(keep.sum())
    point_term = 1.2533 * spread / np.sqrt(n)
    frame_term = _mad(np.array(per_frame)) / np.sqrt(len(per_frame)) if len(per_frame) > 2 else 0.0
    return MetricScale(scale=float(np.exp(centre)), spread=spread,
                       uncertainty=float(max(point_term, frame_term)), n_points=n,
                       n_frames=len(per_frame), frame_scales=[float(np.exp(v)) for v in per_frame],
                       frames=list(frames) if frames is not None else list(range(n_in)))


def sample_map(depth: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of an (H, W) map at pixel positions ``xy`` (pixel-corner origin, so a
    pixel's centre is at +0.5); NaN outside the map or next to an unknown value."""
    h, w = depth.shape
    x = np.asarray(xy[:, 0], np.float64) - 0.5
    y = np.asarray(xy[:, 1], np.float64) - 0.5
    out = np.full(len(x), np.nan)
    ok = (x >= 0) & (y >= 0) & (x <= w - 1) & (y <= h - 1)
    x, y = x[ok], y[ok]
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2 if w > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2 if h > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    d = np.asarray(depth, np.float64)
    out[ok] = ((d[y0, x0] * (1 - fx) + d[y0, x1] * fx) * (1 - fy)
               + (d[y1, x0] * (1 - fx) + d[y1, x1] * fx) * fy)
    return out


def project(points: np.ndarray, c2w_blender: np.ndarray, focal_px: float,
            principal_point: tuple[float, float], k1: float = 0.0, k2: float = 0.0):
    """Pixel positions (N, 2) and depths along the viewing axis (N,) of world ``points`` in a
    Blender camera (looks down -Z, +Y up) with COLMAP RADIAL distortion."""
    m = np.asarray(c2w_blender, np.float64)
    p = (np.asarray(points, np.float64) - m[:3, 3]) @ m[:3, :3]
    z = -p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = p[:, 0] / z, -p[:, 1] / z
    r2 = u * u + v * v
    d = 1.0 + k1 * r2 + k2 * r2 * r2
    xy = np.column_stack([principal_point[0] + focal_px * u * d, principal_point[1] + focal_px * v * d])
    return xy, z


def scale_from_frames(model, frames: Iterable[tuple[int, np.ndarray, np.ndarray]],
                      points: np.ndarray, focal_px: float, principal_point: tuple[float, float],
                      k1: float = 0.0, k2: float = 0.0, width: int | None = None) -> MetricScale:
    """Scale from ``(position, rgb, c2w_blender)`` frames: the solved ``points`` (world) each
    frame sees in front of it and inside it are compared with the model's metric depth there.
    The intrinsics are in pixels of frames ``width`` wide (default: the frames' own width);
    ``rgb`` may be smaller with the same aspect ratio."""
    from backend.models.depth import metric_depth

    metric, solved, used = [], [], []
    for pos, rgb, c2w in frames:
        xy, z = project(points, c2w, focal_px, principal_point, k1, k2)
        inside = (z > 0) & np.isfinite(xy).all(1)
        if not inside.any():
            continue
        k = rgb.shape[1] / width if width else 1.0
        depth = metric_depth(model, rgb, focal_px * k)
        metric.append(sample_map(depth, xy[inside] * k))
        solved.append(z[inside])
        used.append(pos)
    return scale_from_samples(metric, solved, used)


def pick_frames(registered: np.ndarray, count: int = 8) -> list[int]:
    """``count`` registered frame positions spread evenly over the clip."""
    reg = np.flatnonzero(np.asarray(registered, bool))
    if len(reg) <= count:
        return reg.tolist()
    return reg[np.unique(np.linspace(0, len(reg) - 1, count).round().astype(int))].tolist()


def estimate_metric_scale(sol, input_path: str | Path, model, count: int = 8,
                          max_size: int | None = 1280, progress=None) -> MetricScale:
    """The metric scale of a :class:`PoseSolution` from ``count`` of its frames, read again
    from ``input_path`` (the video or image folder it was solved from; frames are matched by
    the solution's ``sources``). See the module docstring."""
    from backend.media.video import iter_frames

    positions = pick_frames(sol.registered, count)
    if len(positions) == 0:
        raise JobError("metric scale: the solve has no registered frame", "scale_failed")
    wanted = {sol.sources[p]: p for p in positions}
    is_video = all(s.isdigit() for s in wanted)
    start = min(int(s) for s in wanted) if is_video else 0
    stop = max(int(s) for s in wanted) + 1 if is_video else None
    frames = []
    reader = iter_frames(input_path, start, stop, 1, None, max_size)
    try:
        for _, source, rgb in reader:
            if source in wanted:
                p = wanted.pop(source)
                frames.append((p, rgb, sol.matrix_world[p]))
                if progress is not None:
                    progress.update(len(frames) / len(positions), f"metric depth {len(frames)}/{len(positions)}")
            if not wanted:
                break
    finally:
        reader.close()
    if wanted:
        raise JobError(f"metric scale: frames {sorted(wanted)} of the solve are not in {input_path}",
                       "bad_input")
    return scale_from_frames(model, frames, sol.points_xyz, sol.focal_px, sol.principal_point_px,
                             sol.k1, sol.k2, width=sol.width)
