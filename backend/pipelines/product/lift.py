"""Starting points for the object's splats: the visual hull of the views' silhouettes and the
views' depth lifted into 3D.

The hull (voxels whose projection lies inside every silhouette) bounds the object and gives a
depth per pixel (the first hull voxel along its ray). A depth model's output, of unknown scale
and offset on generated views, is fitted to the hull's depth (scale and shift in the model's
output space, depth or inverse depth) and kept where it lies inside the hull; without a depth
model the hull's own depth is lifted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.pipelines.reconstruct.scene import blender_to_viewmats

SILHOUETTE = 0.5


@dataclass
class Hull:
    occupied: np.ndarray  # (R, R, R) bool, index order x, y, z
    half: float  # the grid spans [-half, half]^3
    res: int

    @property
    def voxel(self) -> float:
        return 2 * self.half / self.res

    def index(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voxel indices (N, 3) of points and whether they fall inside the grid."""
        ijk = np.floor((pts + self.half) / self.voxel).astype(np.int64)
        inside = ((ijk >= 0) & (ijk < self.res)).all(1)
        return np.clip(ijk, 0, self.res - 1), inside

    def contains(self, pts: np.ndarray, dilate: int = 0) -> np.ndarray:
        occ = self.occupied
        if dilate:
            from scipy.ndimage import binary_dilation

            occ = binary_dilation(occ, iterations=dilate)
        ijk, inside = self.index(pts)
        return inside & occ[ijk[:, 0], ijk[:, 1], ijk[:, 2]]


def project(pts: np.ndarray, viewmat: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coordinates (pixel-corner origin) and depth of world points in one camera."""
    cam = pts @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * cam[:, 0] / z + K[0, 2]
        v = K[1, 1] * cam[:, 1] / z + K[1, 2]
    return u, v, z


def visual_hull(alphas: np.ndarray, c2w: np.ndarray, Ks: np.ndarray, half: float, res: int = 64) -> Hull:
    """Voxels of ``[-half, half]^3`` inside every view's silhouette (alpha > 0.5)."""
    c = (np.arange(res) + 0.5) * (2 * half / res) - half
    pts = np.stack(np.meshgrid(c, c, c, indexing="ij"), -1).reshape(-1, 3)
    occ = np.ones(len(pts), bool)
    h, w = alphas.shape[1:3]
    for a, vm, K in zip(alphas, blender_to_viewmats(c2w), Ks):
        u, v, z = project(pts[occ], vm, K)
        ui, vi = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        ok = (z > 0) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
        keep = np.zeros(len(ui), bool)
        keep[ok] = a[vi[ok], ui[ok]] > SILHOUETTE
        idx = np.nonzero(occ)[0]
        occ[idx[~keep]] = False
    return Hull(occ.reshape(res, res, res), float(half), int(res))


def pixel_rays(c2w: np.ndarray, K: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """World origin and per-pixel directions scaled so that ``t`` is planar depth (H*W, 3)."""
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    d_cv = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    vm = blender_to_viewmats(c2w)
    R = vm[:3, :3].T  # camera-to-world rotation (OpenCV axes)
    return np.asarray(c2w)[:3, 3], d_cv @ R.T


def hull_depth(hull: Hull, c2w: np.ndarray, K: np.ndarray, w: int, h: int) -> np.ndarray:
    """Planar depth (H, W) of the first hull voxel along each pixel's ray (inf where none)."""
    o, d = pixel_rays(c2w, K, w, h)
    dist = np.linalg.norm(o)
    step = hull.voxel / 2
    ts = np.arange(max(dist - 1.8 * hull.half, 1e-3), dist + 1.8 * hull.half, step)
    out = np.full(len(d), np.inf)
    todo = np.arange(len(d))
    for t in ts:
        if not len(todo):
            break
        hit = hull.contains(o + t * d[todo])
        out[todo[hit]] = t
        todo = todo[~hit]
    return out.reshape(h, w).astype(np.float32)


def align_depth(y: np.ndarray, output: str, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Depth from a model's output ``y`` (``"depth"`` or ``"inverse_depth"``) by the scale and
    shift that fit it to ``reference`` depth on ``mask`` (least squares in the model's space)."""
    ok = mask & np.isfinite(y) & np.isfinite(reference) & (reference > 0)
    if ok.sum() < 16:
        return np.full_like(reference, np.inf)
    target = reference[ok] if output == "depth" else 1.0 / reference[ok]
    A = np.stack([y[ok], np.ones(ok.sum())], 1)
    (a, b), *_ = np.linalg.lstsq(A, target, rcond=None)
    fit = a * y + b
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = fit if output == "depth" else 1.0 / fit
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.inf).astype(np.float32)


def lift(rgb: np.ndarray, alpha: np.ndarray, depth: np.ndarray, c2w: np.ndarray, K: np.ndarray,
         stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """World points and colours of the silhouette's pixels at ``depth`` (every ``stride``-th)."""
    h, w = alpha.shape
    o, d = pixel_rays(c2w, K, w, h)
    sel = np.zeros((h, w), bool)
    sel[::stride, ::stride] = True
    sel &= (alpha > SILHOUETTE) & np.isfinite(depth)
    idx = np.nonzero(sel.ravel())[0]
    pts = o + depth.ravel()[idx, None] * d[idx]
    return pts, rgb.reshape(-1, 3)[idx]
