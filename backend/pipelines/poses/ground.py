"""Ground plane and the Blender world frame of a solve.

The ground is the dominant plane below the cameras, found by RANSAC on the sparse points (the
lowest of the well-supported parallel planes, so a table top does not win over a visible floor). The
world is then rotated so the plane is z = 0 with +Z up (towards the cameras), +X along the first
camera's right, and the origin where the first frame's optical axis meets the plane (or under
the first camera when it looks above the horizon). Scale puts the first camera ``height`` above
the ground unless a known distance is given.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPENCV_TO_BLENDER = np.diag([1.0, -1.0, -1.0])


@dataclass
class Plane:
    """n . x + d = 0 with unit ``n`` pointing towards the cameras."""

    normal: np.ndarray
    d: float
    inliers: int
    found: bool

    def distance(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x) @ self.normal + self.d


def up_hint(c2w_cv: np.ndarray) -> np.ndarray:
    """Average 'image up' direction of the cameras (OpenCV cameras have +y pointing down)."""
    up = -c2w_cv[:, :3, 1].mean(0)
    return up / max(np.linalg.norm(up), 1e-12)


def fit_ground_plane(points: np.ndarray, c2w_cv: np.ndarray, iterations: int = 1000,
                     threshold: float | None = None, max_tilt_deg: float = 60.0,
                     min_support: float = 0.3, seed: int = 0) -> Plane:
    """RANSAC for the ground: among planes that have (nearly) all cameras above them and a
    normal within ``max_tilt_deg`` of the cameras' average up direction, take the one with
    most inliers; then prefer a distinct parallel plane (within 10 deg) further below that has
    at least ``min_support`` times as many inliers of its own, so a table top or box lid above
    the floor is not taken for the ground when the floor itself is well seen."""
    centres = c2w_cv[:, :3, 3]
    up = up_hint(c2w_cv)
    pts = np.asarray(points, np.float64)
    if threshold is None:
        depth = np.median(np.linalg.norm(pts[:, None, :] - centres[None, :1, :], axis=2)) if len(pts) else 1.0
        threshold = 0.01 * depth
    rng = np.random.default_rng(seed)
    cos_tilt = np.cos(np.radians(max_tilt_deg))
    candidates = []
    if len(pts) >= 3:
        for _ in range(iterations):
            s = pts[rng.choice(len(pts), 3, replace=False)]
            n = np.cross(s[1] - s[0], s[2] - s[0])
            norm = np.linalg.norm(n)
            if norm < 1e-12:
                continue
            n /= norm
            if n @ up < 0:
                n = -n
            if n @ up < cos_tilt:
                continue
            d = -n @ s[0]
            if np.mean(centres @ n + d > 0) < 0.9:
                continue
            candidates.append((n, d, int(np.sum(np.abs(pts @ n + d) < threshold))))
    best = max(candidates, key=lambda c: c[2]) if candidates else None
    if best is None or best[2] < max(10, 0.05 * len(pts)):
        # No plane below the cameras: a horizontal plane through the lowest points.
        h = pts @ up if len(pts) else np.array([centres[0] @ up - 1.0])
        return Plane(up, -float(np.percentile(h, 2)), 0, False)
    plane = _refine(pts, best[0], best[1], threshold)
    # A distinct, parallel plane further below (the floor under a table top) with enough points
    # of its own wins.
    taken = np.abs(plane.distance(pts)) < threshold
    height = np.mean(plane.distance(centres))
    cos_par = np.cos(np.radians(10.0))
    lower = []
    for n, d, _ in candidates:
        if n @ plane.normal < cos_par or np.mean(centres @ n + d) < height + 3 * threshold:
            continue
        own = int(np.sum((np.abs(pts @ n + d) < threshold) & ~taken))
        if own >= min_support * plane.inliers:
            lower.append((own, n, d))
    if lower:
        _, n, d = max(lower, key=lambda c: c[0])
        below = _refine(pts, n, d, threshold)
        if below.normal @ plane.normal >= cos_par:
            return below
    return plane


def _refine(pts: np.ndarray, n: np.ndarray, d: float, threshold: float) -> Plane:
    """Least-squares plane through the inliers of ``(n, d)`` (twice, re-selecting inliers)."""
    for _ in range(2):
        inl = np.abs(pts @ n + d) < threshold
        c = pts[inl].mean(0)
        _, _, vt = np.linalg.svd(pts[inl] - c, full_matrices=False)
        n = vt[2] if vt[2] @ n > 0 else -vt[2]
        d = -n @ c
    inl = np.abs(pts @ n + d) < threshold
    return Plane(n, float(d), int(inl.sum()), True)


def world_from_solve(plane: Plane, c2w0_cv: np.ndarray, scale: float | None = None,
                     height: float = 1.6) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity ``x_world = s * R @ (x - o)`` as ``(s, R, o)`` (see module docstring)."""
    z = plane.normal
    c0 = c2w0_cv[:3, 3]
    right = c2w0_cv[:3, 0] - (c2w0_cv[:3, 0] @ z) * z
    if np.linalg.norm(right) < 1e-6:
        right = np.cross(c2w0_cv[:3, 2], z)
    x = right / np.linalg.norm(right)
    y = np.cross(z, x)
    r = np.stack([x, y, z])
    h0 = float(plane.distance(c0))
    fwd = c2w0_cv[:3, 2]
    denom = fwd @ z
    t = -h0 / denom if abs(denom) > 1e-9 else -1.0
    o = c0 + t * fwd if t > 0 else c0 - h0 * z
    if scale is None:
        scale = height / h0 if h0 > 1e-12 else 1.0
    return float(scale), r, o


def apply_world(s: float, r: np.ndarray, o: np.ndarray, c2w_cv: np.ndarray,
                points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blender camera-to-world matrices and points in the new world."""
    out = np.tile(np.eye(4), (len(c2w_cv), 1, 1))
    out[:, :3, :3] = r @ c2w_cv[:, :3, :3] @ OPENCV_TO_BLENDER
    out[:, :3, 3] = s * (c2w_cv[:, :3, 3] - o) @ r.T
    pts = s * (np.asarray(points, np.float64).reshape(-1, 3) - o) @ r.T
    return out, pts
