"""A mesh from splats: rendered depth fused into a TSDF, marching cubes, vertex colours.

Every camera renders the splats' depth and coverage; a voxel in front of a covered pixel's
surface gets the truncated signed distance, a voxel seen through an uncovered pixel is empty
(and outside for good once two views see it so), and a voxel never seen (behind every
surface) is inside. ``skimage.measure.marching_cubes``
extracts the zero level; each vertex takes the mean rendered colour of the views that see it.
"""
from __future__ import annotations

import numpy as np

from backend.pipelines.reconstruct.scene import blender_to_viewmats
from backend.pipelines.render import cameras_from_arrays, render_views
from backend.pipelines.splats_io import Splats

from .cameras import focal_px, look_at
from .lift import project


def sphere_cameras(n: int, radius: float, centre) -> np.ndarray:
    """``n`` Blender cameras on a Fibonacci sphere of ``radius`` about ``centre``, facing it."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5 ** 0.5) * i
    r = np.sqrt(1 - z * z)
    dirs = np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)
    c = np.asarray(centre, np.float64)
    return np.array([look_at(c + radius * d, c) for d in dirs])


def fuse_tsdf(depth, alpha, c2w, K, lo, hi, res: int, trunc_vox: float = 3.0, carve_votes: int = 2):
    """TSDF grid (res along the longest side of the box ``lo``..``hi``), its origin and voxel."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    voxel = float((hi - lo).max() / res)
    shape = np.maximum(2, np.ceil((hi - lo) / voxel).astype(int) + 1)
    axes = [lo[k] + voxel * np.arange(shape[k]) for k in range(3)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    trunc = trunc_vox * voxel
    acc = np.zeros(len(pts))
    wsum = np.zeros(len(pts))
    empty_votes = np.zeros(len(pts), np.int32)
    h, w = alpha.shape[1:]
    for d, a, vm, k in zip(depth, alpha, blender_to_viewmats(c2w), K):
        u, v, z = project(pts, vm, k)
        ui, vi = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        ok = (z > 0) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
        idx = np.nonzero(ok)[0]
        dd, aa = d[vi[idx], ui[idx]], a[vi[idx], ui[idx]]
        empty = (aa < 0.5) | ~np.isfinite(dd)
        sdf = np.where(empty, trunc, dd - z[idx])
        empty_votes[idx[empty]] += 1
        seen = empty | (sdf > -trunc)
        idx, sdf = idx[seen], sdf[seen]
        acc[idx] += np.clip(sdf, -trunc, trunc) / trunc
        wsum[idx] += 1
    tsdf = np.where(wsum > 0, acc / np.maximum(wsum, 1), -1.0)
    # carving: a voxel two views see through uncovered pixels is outside (the silhouettes'
    # hull), which averaging alone leaves slightly dilated at grazing edges
    tsdf[empty_votes >= carve_votes] = 1.0
    return tsdf.reshape(*shape), lo, voxel


def extract_mesh(splats: Splats, c2w: np.ndarray, fov_deg: float = 30.0, size: int = 128,
                 res: int = 128, device: str = "cpu"):
    """A coloured ``trimesh.Trimesh`` of the splats (Blender world), from renders by the
    Blender cameras ``c2w``; the TSDF box is the splats' core extent padded by 10 %."""
    import trimesh
    from skimage.measure import marching_cubes

    f = focal_px(fov_deg, size)
    cams = cameras_from_arrays(c2w, f, (size / 2, size / 2), size, size)
    out = render_views(splats, cams, device=device)
    core = splats.means[splats.alpha() > 0.2] if (splats.alpha() > 0.2).sum() >= 4 else splats.means
    lo, hi = core.min(0), core.max(0)
    pad = 0.1 * (hi - lo).max() + 1e-6
    tsdf, origin, voxel = fuse_tsdf(out["depth"], out["alpha"], c2w, cams.Ks, lo - pad, hi + pad, res)
    if not (tsdf.min() < 0 < tsdf.max()):
        raise ValueError("the splats' depth gives no surface to extract")
    verts, faces, _, _ = marching_cubes(tsdf, level=0.0, spacing=(voxel,) * 3)
    mesh = trimesh.Trimesh(verts + origin, faces[:, ::-1], process=True)
    parts = mesh.split(only_watertight=False)
    if len(parts) > 1:
        mesh = max(parts, key=lambda m: m.area)
    mesh.visual.vertex_colors = _vertex_colours(mesh.vertices, out, c2w, cams.Ks, 2 * voxel)
    return mesh


def _vertex_colours(verts, out, c2w, Ks, tol) -> np.ndarray:
    h, w = out["alpha"].shape[1:]
    total = np.zeros((len(verts), 3))
    count = np.zeros(len(verts))
    for rgb, a, d, vm, k in zip(out["rgb"], out["alpha"], out["depth"], blender_to_viewmats(c2w), Ks):
        u, v, z = project(verts, vm, k)
        ui, vi = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        ok = (z > 0) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
        idx = np.nonzero(ok)[0]
        vis = (a[vi[idx], ui[idx]] > 0.5) & (np.abs(d[vi[idx], ui[idx]] - z[idx]) < tol)
        idx = idx[vis]
        total[idx] += rgb[vi[idx], ui[idx]]
        count[idx] += 1
    col = np.full((len(verts), 3), 0.5)
    seen = count > 0
    col[seen] = total[seen] / count[seen, None]
    if seen.any() and not seen.all():
        from scipy.spatial import cKDTree

        _, j = cKDTree(verts[seen]).query(verts[~seen])
        col[~seen] = col[seen][j]
    rgba = np.concatenate([np.clip(col, 0, 1) * 255, np.full((len(verts), 1), 255)], 1)
    return rgba.round().astype(np.uint8)


def to_gltf_axes(mesh):
    """A copy of ``mesh`` in glTF axes (+Y up) from Blender's (+Z up)."""
    m = mesh.copy()
    m.apply_transform(np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float))
    return m
