"""Load a camera solve (cameras.json + points.ply) and convert Blender cameras for gsplat.

Blender cameras look down their local -Z with +Y up; gsplat wants world-to-camera matrices
with OpenCV axes (x right, y down, +z forward): ``viewmat = inv(matrix_world @ diag(1,-1,-1,1))``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from plyfile import PlyData

from backend.progress import JobError
from shared_protocol import camera_file
from shared_protocol.conventions import c2w_blender_to_opencv, c2w_opencv_to_blender, invert_pose

INPUT_KEYS = ("source_video", "source", "input")


@dataclass
class Solve:
    """Registered frames of a camera solve, plus its sparse points (may be empty)."""

    doc: dict
    path: Path
    width: int
    height: int
    index: np.ndarray  # position of each registered frame in doc["frames"]
    sources: list[str]
    c2w: np.ndarray  # [F,4,4] Blender matrix_world
    K: np.ndarray  # [F,3,3]
    k1: float
    k2: float
    points: np.ndarray  # [P,3]
    colors: np.ndarray  # [P,3] in [0,1]

    @property
    def viewmats(self) -> np.ndarray:
        return blender_to_viewmats(self.c2w)

    def input_path(self) -> Path | None:
        """The footage the solve came from, as recorded in cameras.json (or None)."""
        for key in INPUT_KEYS:
            for holder in (self.doc, self.doc.get("stats") or {}):
                value = holder.get(key)
                if isinstance(value, str) and value:
                    p = Path(value)
                    return p if p.is_absolute() else (self.path.parent / p)
        return None


def blender_to_viewmats(c2w: np.ndarray) -> np.ndarray:
    """Blender ``matrix_world`` (...,4,4) -> OpenCV world-to-camera (...,4,4)."""
    return invert_pose(c2w_blender_to_opencv(np.asarray(c2w, np.float64)))


def viewmats_to_blender(viewmats: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera (...,4,4) -> Blender ``matrix_world``."""
    return c2w_opencv_to_blender(invert_pose(np.asarray(viewmats, np.float64)))


def read_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a point cloud PLY (x y z [red green blue]); colours come back in [0, 1]."""
    try:
        v = PlyData.read(str(path))["vertex"].data
    except Exception as exc:
        raise JobError(f"cannot read point cloud {path}: {exc}", code="bad_input") from None
    names = v.dtype.names
    if not {"x", "y", "z"} <= set(names):
        raise JobError(f"point cloud {path} has no x/y/z properties", code="bad_input")
    pts = np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float64)
    if {"red", "green", "blue"} <= set(names):
        rgb = np.stack([v["red"], v["green"], v["blue"]], 1).astype(np.float64)
        if v.dtype["red"].kind in "ui":
            rgb = rgb / 255.0
    else:
        rgb = np.full_like(pts, 0.5)
    ok = np.isfinite(pts).all(1)
    return pts[ok], np.clip(rgb[ok], 0, 1)


def load_solve(solve_dir: str | Path, require_points: bool = True) -> Solve:
    """Read ``cameras.json`` and ``points.ply`` of a solve folder (registered frames only)."""
    solve_dir = Path(solve_dir)
    cam_path = solve_dir / "cameras.json" if solve_dir.is_dir() else solve_dir
    if not cam_path.is_file():
        raise JobError(f"no cameras.json in solve folder {solve_dir}", code="bad_input")
    try:
        doc = camera_file.read(cam_path)
    except camera_file.CameraFileError as exc:
        raise JobError(str(exc), code="bad_input") from None
    frames = doc["frames"]
    index = np.array([i for i, f in enumerate(frames) if f.get("registered", True)], int)
    if len(index) < 2:
        raise JobError(f"{cam_path}: fewer than 2 registered frames", code="bad_input")
    c2w = np.array([frames[i]["matrix_world"] for i in index], np.float64)
    K = np.array([camera_file.intrinsics_matrix(frames[i]) for i in index], np.float64)
    pts_path = cam_path.parent / "points.ply"
    if pts_path.is_file():
        pts, rgb = read_points(pts_path)
    elif require_points:
        raise JobError(f"no points.ply beside {cam_path}", code="bad_input")
    else:
        pts, rgb = np.zeros((0, 3)), np.zeros((0, 3))
    dist = doc.get("distortion") or {}
    return Solve(doc=doc, path=cam_path, width=int(doc["width"]), height=int(doc["height"]),
                 index=index, sources=[str(frames[i]["source"]) for i in index], c2w=c2w, K=K,
                 k1=float(dist.get("k1", 0.0)), k2=float(dist.get("k2", 0.0)), points=pts, colors=rgb)


def scene_scale(c2w: np.ndarray) -> float:
    """Radius of the camera centres about their mean, x 1.1 (gsplat's trainer convention)."""
    centres = np.asarray(c2w)[:, :3, 3]
    r = np.linalg.norm(centres - centres.mean(0), axis=1).max()
    return float(max(r, 1e-3) * 1.1)
