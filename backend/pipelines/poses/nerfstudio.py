"""nerfstudio ``transforms.json``: export and import.

Export: ``camera_model`` OPENCV with fx = fy = f, cx, cy, k1, k2 (p1 = p2 = 0), one frame per
registered camera with ``transform_matrix`` = camera-to-world in the OpenGL/Blender camera
convention (the solve's world, +Z up), ``file_path`` ``images/<name>`` and ``ply_file_path``
pointing at the sparse points. Import accepts shared or per-frame intrinsics (square pixels,
no tangential distortion) and returns a cameras.json document.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from shared_protocol import camera_file
from shared_protocol.camera_file import CameraFileError

from .colmap_text import image_name_for, source_for
from .solution import PoseSolution


def export_transforms(sol: PoseSolution, path: str | Path, ply_name: str = "points.ply") -> Path:
    video = all(s.isdigit() for s in sol.sources)
    cx, cy = sol.principal_point_px
    doc = {"camera_model": "OPENCV", "w": sol.width, "h": sol.height,
           "fl_x": sol.focal_px, "fl_y": sol.focal_px, "cx": cx, "cy": cy,
           "k1": sol.k1, "k2": sol.k2, "p1": 0.0, "p2": 0.0,
           "ply_file_path": ply_name,
           "frames": [{"file_path": f"images/{image_name_for(s, video)}",
                       "transform_matrix": np.asarray(m).tolist()}
                      for m, s, reg in zip(sol.matrix_world, sol.sources, sol.registered) if reg]}
    path = Path(path)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def _get(d: dict, frame: dict, key: str, path: Path, default=None):
    v = frame.get(key, d.get(key, default))
    if v is None:
        raise CameraFileError(f"{path}: {key}: missing")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise CameraFileError(f"{path}: {key}: expected a number")
    return float(v)


def import_transforms(path: str | Path, fps: float = 0.0) -> dict:
    """A cameras.json document from a nerfstudio transforms.json (frames in file-name order)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise CameraFileError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise CameraFileError(f"{path}: not valid JSON ({exc})") from None
    frames = d.get("frames")
    if not isinstance(frames, list) or not frames:
        raise CameraFileError(f"{path}: frames: expected a non-empty list")
    model = d.get("camera_model", "OPENCV")
    if model not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE"):
        raise CameraFileError(f"{path}: camera_model {model!r} is not supported")
    rows = []
    for i, fr in enumerate(frames):
        fx = _get(d, fr, "fl_x", path)
        fy = _get(d, fr, "fl_y", path, fx)
        if abs(fx - fy) > 1e-3 * fx:
            raise CameraFileError(f"{path}: frames[{i}]: fl_x={fx} != fl_y={fy} "
                                  "(non-square pixels are not supported)")
        for k in ("p1", "p2"):
            if abs(_get(d, fr, k, path, 0.0)) > 1e-9:
                raise CameraFileError(f"{path}: frames[{i}]: {k} tangential distortion is not supported")
        m = np.asarray(fr.get("transform_matrix"), float)
        if m.shape != (4, 4):
            raise CameraFileError(f"{path}: frames[{i}].transform_matrix: expected 4x4")
        name = str(fr.get("file_path", f"frame_{i:06d}.png"))
        rows.append((name, m, (fx + fy) / 2, _get(d, fr, "cx", path), _get(d, fr, "cy", path),
                     _get(d, fr, "k1", path, 0.0), _get(d, fr, "k2", path, 0.0)))
    rows.sort(key=lambda r: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", r[0])])
    w = int(_get(d, frames[0], "w", path))
    h = int(_get(d, frames[0], "h", path))
    return camera_file.make_document(
        w, h, fps, [r[1] for r in rows], [r[2] for r in rows], [(r[3], r[4]) for r in rows],
        sources=[source_for(Path(r[0]).name) for r in rows], k1=rows[0][5], k2=rows[0][6],
        stats={"imported_from": "nerfstudio_transforms"})
