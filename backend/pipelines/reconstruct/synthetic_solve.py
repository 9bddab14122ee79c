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


def analytic_solve(out_dir: str | Path, n_gaussians: int = 400, n_frames: int = 16, width: int = 64,
                   height: int = 48, seed: int = 0, noise: float = 0.01, device: str = "cpu") -> Path:
    """A solve folder whose truth is a known set of Gaussians (no Blender needed).

    Random coloured Gaussians fill a 2 m box around the origin; cameras orbit it at 4 m looking
    at the centre (Blender convention); the background is black. Frames are rendered with the
    PyTorch rasterizer; points.ply holds the true centres with ``noise`` (m) added.
    """
    import cv2
    import torch

    from .raster_torch import rasterize as rasterize_torch
    from .scene import viewmats_to_blender

    out_dir = Path(out_dir)
    (out_dir / "frames").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    means = rng.uniform(-1, 1, (n_gaussians, 3))
    scales = np.exp(rng.uniform(np.log(0.04), np.log(0.15), (n_gaussians, 3)))
    quats = rng.normal(size=(n_gaussians, 4))
    opac = rng.uniform(0.6, 0.95, n_gaussians)
    rgb = rng.uniform(0.05, 0.95, (n_gaussians, 3))
    f = 0.9 * width
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    mats = []
    for i in range(n_frames):
        a = 2 * np.pi * i / n_frames
        c = np.array([4 * np.cos(a), 4 * np.sin(a), 1.0 + 0.3 * np.sin(3 * a)])
        fwd = -c / np.linalg.norm(c)
        right = np.cross(fwd, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        w2c = np.eye(4)
        w2c[:3, :3] = np.stack([right, down, fwd])
        w2c[:3, 3] = -w2c[:3, :3] @ c
        mats.append(w2c)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731
    with torch.no_grad():
        img, _, _ = rasterize_torch(t(means), t(quats), t(scales), t(opac), t(rgb), t(mats),
                                    t(np.repeat(K[None], n_frames, 0)), width, height)
    frames = []
    for i in range(n_frames):
        name = f"{i:06d}.png"
        cv2.imwrite(str(out_dir / "frames" / name),
                    cv2.cvtColor((img[i].clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8),
                                 cv2.COLOR_RGB2BGR))
        frames.append({"frame": i, "source": name, "matrix_world": viewmats_to_blender(mats[i]).tolist(),
                       "focal_px": f, "principal_point_px": [width / 2, height / 2], "registered": True,
                       "reproj_error_px": 0.0})
    doc = {"version": 1, "convention": "blender", "width": width, "height": height, "fps": 24.0,
           "frames": frames, "distortion": {"model": "radial2", "k1": 0.0, "k2": 0.0},
           "ground_plane": None, "stats": {"input": str((out_dir / "frames").resolve())}}
    (out_dir / "cameras.json").write_text(json.dumps(doc))
    pts = means + rng.normal(scale=noise, size=means.shape)
    arr = np.empty(n_gaussians, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"),
                                       ("green", "u1"), ("blue", "u1"), ("track_length", "u1")])
    arr["x"], arr["y"], arr["z"] = pts.T
    arr["red"], arr["green"], arr["blue"] = (rgb * 255).round().astype(np.uint8).T
    arr["track_length"] = 3
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(out_dir / "points.ply"))
    return out_dir
