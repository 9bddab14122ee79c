"""A camera-solve folder from a synthetic clip with known truth (for tests and benchmarks).

The clip's ``truth.json`` (cameras.json format) becomes ``cameras.json`` with the frames folder
recorded as its input, and ``points.ply`` is sampled by back-projecting the clip's true depth
maps, standing in for the solve's sparse, slightly noisy triangulated points.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from backend.media.video import iter_frames

from .scene import blender_to_viewmats


def solve_from_clip(clip_dir: str | Path, out_dir: str | Path, n_points: int = 2000,
                    noise: float = 0.0, seed: int = 0, frames_step: int = 1) -> Path:
    clip_dir, out_dir = Path(clip_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = json.loads((clip_dir / "truth.json").read_text())
    doc.setdefault("stats", {})["input"] = str((clip_dir / "frames").resolve())
    (out_dir / "cameras.json").write_text(json.dumps(doc))
    rng = np.random.default_rng(seed)
    frames = doc["frames"][::frames_step]
    per = max(1, n_points // len(frames))
    images = {src: rgb for _, src, rgb in iter_frames(clip_dir / "frames")}
    pts, cols = [], []
    for fr in frames:
        depth = np.load(clip_dir / "depth" / f"{fr['frame']:06d}.npy")
        rgb = images[fr["source"]]
        v, u = np.nonzero(np.isfinite(depth) & (depth > 0))
        pick = rng.choice(len(u), size=min(per, len(u)), replace=False)
        u, v = u[pick], v[pick]
        z = depth[v, u].astype(np.float64)
        f = fr["focal_px"]
        cx, cy = fr["principal_point_px"]
        cam = np.stack([(u + 0.5 - cx) / f * z, (v + 0.5 - cy) / f * z, z, np.ones_like(z)], 1)
        w2c = blender_to_viewmats(np.array(fr["matrix_world"]))
        world = (np.linalg.inv(w2c) @ cam.T).T[:, :3]
        pts.append(world + rng.normal(scale=noise, size=world.shape))
        cols.append(rgb[v, u])
    pts, cols = np.concatenate(pts), np.concatenate(cols)
    arr = np.empty(len(pts), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"),
                                    ("green", "u1"), ("blue", "u1"), ("track_length", "u1")])
    arr["x"], arr["y"], arr["z"] = pts.T
    arr["red"], arr["green"], arr["blue"] = cols.T
    arr["track_length"] = 2
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(out_dir / "points.ply"))
    return out_dir
