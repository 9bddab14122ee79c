"""Camera paths as render inputs: a cameras.json document or a nerfstudio camera_path.json.

Novel camera paths (orbits, dollies, smoothed paths exported from Blender) are rendered from
the splats by the stereo job and by the composite (the splat render is then the background).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.progress import JobError


@dataclass
class PathCameras:
    """Per-frame Blender camera-to-world matrices and intrinsics of a camera path."""

    matrix_world: np.ndarray  # (N, 4, 4)
    focal_px: np.ndarray  # (N,)
    principal_point_px: np.ndarray  # (N, 2)
    width: int
    height: int
    fps: float


def is_camera_path(path: str | Path) -> bool:
    """Whether ``path`` names a camera file (``.json``) rather than footage."""
    p = Path(path)
    return p.is_file() and p.suffix.lower() == ".json"


def load_path(path: str | Path) -> PathCameras:
    """Read a cameras.json or nerfstudio camera_path.json; JobError naming the file if neither."""
    from shared_protocol import camera_file
    from shared_protocol.camera_paths import CameraPathError, from_nerfstudio

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JobError(f"{path}: not a readable JSON camera file ({exc.__class__.__name__})", "bad_input") from None
    if isinstance(doc, dict) and "camera_path" in doc:
        try:
            cp = from_nerfstudio(doc, source=str(path))
        except CameraPathError as exc:
            raise JobError(str(exc), "bad_input") from None
        n = len(cp)
        pp = np.tile([cp.width / 2.0, cp.height / 2.0], (n, 1))
        return PathCameras(cp.matrices, cp.focal_px, pp, cp.width, cp.height, cp.fps)
    try:
        doc = camera_file.validate(doc)
    except camera_file.CameraFileError as exc:
        raise JobError(f"{path}: {exc}", "bad_input") from None
    rows = sorted((f for f in doc["frames"] if f.get("registered", True)), key=lambda f: f["frame"])
    if not rows:
        raise JobError(f"{path}: no registered cameras", "bad_input")
    return PathCameras(np.array([f["matrix_world"] for f in rows], np.float64),
                       np.array([f["focal_px"] for f in rows], np.float64),
                       np.array([f["principal_point_px"] for f in rows], np.float64),
                       int(doc["width"]), int(doc["height"]), float(doc.get("fps") or 24.0))


def cameras_document(cams: PathCameras) -> dict:
    """The path as a cameras.json document; frame ``i``'s ``source`` is ``str(i)``."""
    from shared_protocol import camera_file

    return camera_file.make_document(cams.width, cams.height, cams.fps, cams.matrix_world, cams.focal_px,
                                     cams.principal_point_px, sources=[str(i) for i in range(len(cams.focal_px))])
