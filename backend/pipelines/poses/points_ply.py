"""Sparse points as PLY (plyfile): x y z (float32), red green blue (uchar), track_length (int32:
the number of frames that saw the point)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement


def write_points(path: str | Path, xyz: np.ndarray, rgb: np.ndarray, track_length: np.ndarray) -> None:
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    rgb = np.asarray(rgb).reshape(-1, 3)
    lengths = np.asarray(track_length).reshape(-1)
    if not (len(xyz) == len(rgb) == len(lengths)):
        raise ValueError("points, colours and track lengths differ in count")
    data = np.empty(len(xyz), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"),
                                     ("green", "u1"), ("blue", "u1"), ("track_length", "i4")])
    data["x"], data["y"], data["z"] = xyz.T
    data["red"], data["green"], data["blue"] = np.clip(rgb, 0, 255).astype(np.uint8).T
    data["track_length"] = lengths
    PlyData([PlyElement.describe(data, "vertex")], text=False).write(str(path))


def read_points(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xyz float64, rgb uint8, track_length int32)``; missing colours/lengths default."""
    v = PlyData.read(str(path))["vertex"].data
    names = v.dtype.names
    xyz = np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float64)
    if all(c in names for c in ("red", "green", "blue")):
        rgb = np.stack([v["red"], v["green"], v["blue"]], 1).astype(np.uint8)
    else:
        rgb = np.full((len(xyz), 3), 128, np.uint8)
    lengths = np.asarray(v["track_length"], np.int32) if "track_length" in names else np.zeros(len(xyz), np.int32)
    return xyz, rgb, lengths
