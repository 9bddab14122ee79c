"""Read, validate and write ``cameras.json``: the camera-solve contract (stdlib + numpy only).

Layout (version 1)::

    {"version": 1, "convention": "blender", "width": W, "height": H, "fps": F,
     "frames": [{"frame": 0, "source": "<video frame index or image file name>",
                 "matrix_world": [[...4x4 row-major camera-to-world...]],
                 "focal_px": f, "principal_point_px": [cx, cy],
                 "registered": true, "reproj_error_px": e}, ...],
     "distortion": {"model": "radial2", "k1": k1, "k2": k2},
     "ground_plane": {"point": [x, y, z], "normal": [0, 0, 1]},
     "stats": {...}}

Cameras look down their local -Z with +Y up (Blender); world +Z is up. Pixel (0, 0) is the
top-left corner of the top-left pixel; pixel centres are at +0.5. ``radial2`` distortion is
COLMAP's RADIAL model: normalised coordinates (x, y) map to (x, y) * (1 + k1 r^2 + k2 r^4).
``fps`` is 0 for image folders. ``reproj_error_px`` is null for frames that were not registered.
Unknown keys are preserved (readers must ignore what they do not know).
``stats.scale`` records how the world's scale was set (source, value, uncertainty; see
``shared_protocol.scale``); a file without it reads as the default guess.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_json

VERSION = 1
CONVENTION = "blender"


class CameraFileError(ValueError):
    """A cameras.json document is malformed; the message names the offending field."""


def _number(value: Any, field: str, minimum: float | None = None, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CameraFileError(f"{field}: expected a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise CameraFileError(f"{field}: must be finite, got {value}")
    if positive and v <= 0:
        raise CameraFileError(f"{field}: must be > 0, got {value}")
    if minimum is not None and v < minimum:
        raise CameraFileError(f"{field}: must be >= {minimum}, got {value}")
    return v


def _int(value: Any, field: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CameraFileError(f"{field}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise CameraFileError(f"{field}: must be >= {minimum}, got {value}")
    return value


def _vector(value: Any, n: int, field: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise CameraFileError(f"{field}: expected a list of {n} numbers")
    return [_number(v, f"{field}[{i}]") for i, v in enumerate(value)]


def _matrix(value: Any, field: str) -> list[list[float]]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise CameraFileError(f"{field}: expected 4 rows of 4 numbers")
    return [_vector(r, 4, f"{field}[{i}]") for i, r in enumerate(value)]


def _check_rigid(rows: list, fields: list[str]) -> None:
    """All matrices at once: last row [0, 0, 0, 1] and a rotation in the upper-left 3x3."""
    m = np.asarray(rows, dtype=np.float64).reshape(-1, 4, 4)
    bad_row = np.abs(m[:, 3] - [0, 0, 0, 1]).max(axis=1) > 1e-9
    r = m[:, :3, :3]
    ortho = np.abs(np.swapaxes(r, 1, 2) @ r - np.eye(3)).max(axis=(1, 2))
    bad_rot = (ortho > 1e-4) | (np.linalg.det(r) < 0)
    for i in np.flatnonzero(bad_row | bad_rot)[:1]:
        if bad_row[i]:
            raise CameraFileError(f"{fields[i]}: last row must be [0, 0, 0, 1]")
        raise CameraFileError(f"{fields[i]}: upper-left 3x3 must be a rotation (orthonormal, det +1)")


def validate(doc: Any) -> dict:
    """Check ``doc`` against the contract; return it (with optional parts defaulted).

    Raises :class:`CameraFileError` naming the first offending field.
    """
    if not isinstance(doc, dict):
        raise CameraFileError("document: expected a JSON object")
    for key in ("version", "convention", "width", "height", "frames"):
        if key not in doc:
            raise CameraFileError(f"{key}: missing")
    if doc["version"] != VERSION:
        raise CameraFileError(f"version: unsupported {doc['version']!r} (expected {VERSION})")
    if doc["convention"] != CONVENTION:
        raise CameraFileError(f"convention: expected {CONVENTION!r}, got {doc['convention']!r}")
    _int(doc["width"], "width", 1)
    _int(doc["height"], "height", 1)
    doc.setdefault("fps", 0.0)
    _number(doc["fps"], "fps", minimum=0.0)
    frames = doc["frames"]
    if not isinstance(frames, list) or not frames:
        raise CameraFileError("frames: expected a non-empty list")
    matrices: list = []
    for i, fr in enumerate(frames):
        name = f"frames[{i}]"
        if not isinstance(fr, dict):
            raise CameraFileError(f"{name}: expected an object")
        for key in ("frame", "source", "matrix_world", "focal_px", "principal_point_px"):
            if key not in fr:
                raise CameraFileError(f"{name}.{key}: missing")
        _int(fr["frame"], f"{name}.frame", 0)
        if not isinstance(fr["source"], str):
            raise CameraFileError(f"{name}.source: expected a string")
        matrices.append(_matrix(fr["matrix_world"], f"{name}.matrix_world"))
        _number(fr["focal_px"], f"{name}.focal_px", positive=True)
        _vector(fr["principal_point_px"], 2, f"{name}.principal_point_px")
        fr.setdefault("registered", True)
        if not isinstance(fr["registered"], bool):
            raise CameraFileError(f"{name}.registered: expected true or false")
        fr.setdefault("reproj_error_px", None)
        if fr["reproj_error_px"] is not None:
            _number(fr["reproj_error_px"], f"{name}.reproj_error_px", minimum=0.0)
    _check_rigid(matrices, [f"frames[{i}].matrix_world" for i in range(len(frames))])
    dist = doc.setdefault("distortion", {"model": "radial2", "k1": 0.0, "k2": 0.0})
    if not isinstance(dist, dict):
        raise CameraFileError("distortion: expected an object")
    if dist.get("model") != "radial2":
        raise CameraFileError(f"distortion.model: expected 'radial2', got {dist.get('model')!r}")
    for k in ("k1", "k2"):
        _number(dist.get(k, None), f"distortion.{k}")
    plane = doc.setdefault("ground_plane", None)
    if plane is not None:
        if not isinstance(plane, dict):
            raise CameraFileError("ground_plane: expected an object or null")
        _vector(plane.get("point"), 3, "ground_plane.point")
        n = _vector(plane.get("normal"), 3, "ground_plane.normal")
        if abs(math.sqrt(sum(v * v for v in n)) - 1.0) > 1e-6:
            raise CameraFileError("ground_plane.normal: must be a unit vector")
    stats = doc.setdefault("stats", {})
    if not isinstance(stats, dict):
        raise CameraFileError("stats: expected an object")
    return doc


def read(path: str | os.PathLike) -> dict:
    """Load and validate a cameras.json file; errors name the file and the field."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CameraFileError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CameraFileError(f"{path}: not valid JSON ({exc})") from None
    try:
        return validate(doc)
    except CameraFileError as exc:
        raise CameraFileError(f"{path}: {exc}") from None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def write(path: str | os.PathLike, doc: dict) -> None:
    """Validate ``doc`` and write it atomically (temporary file in the same folder + rename)."""
    doc = validate(_jsonable(doc))
    path = Path(path)
    atomic_write_json(path, doc)


def make_document(width: int, height: int, fps: float, matrices, focal_px, principal_point_px,
                  sources=None, registered=None, reproj_error_px=None, k1: float = 0.0,
                  k2: float = 0.0, ground_plane: dict | None = None,
                  stats: dict | None = None) -> dict:
    """Build a cameras.json document from arrays (``matrices``: N x 4 x 4 camera-to-world).

    ``focal_px`` and ``principal_point_px`` may be shared (scalar / pair) or per frame.
    """
    mats = np.asarray(matrices, dtype=np.float64).reshape(-1, 4, 4)
    n = len(mats)
    focal = np.broadcast_to(np.asarray(focal_px, dtype=np.float64), (n,))
    pp = np.broadcast_to(np.asarray(principal_point_px, dtype=np.float64), (n, 2))
    reg = np.ones(n, bool) if registered is None else np.asarray(registered, bool)
    err = [None] * n if reproj_error_px is None else list(reproj_error_px)
    src = [str(i) for i in range(n)] if sources is None else [str(s) for s in sources]
    frames = []
    for i in range(n):
        e = err[i]
        e = None if e is None or not math.isfinite(float(e)) else float(e)
        frames.append({"frame": i, "source": src[i], "matrix_world": mats[i].tolist(),
                       "focal_px": float(focal[i]), "principal_point_px": pp[i].tolist(),
                       "registered": bool(reg[i]), "reproj_error_px": e})
    doc = {"version": VERSION, "convention": CONVENTION, "width": int(width), "height": int(height),
           "fps": float(fps), "frames": frames,
           "distortion": {"model": "radial2", "k1": float(k1), "k2": float(k2)},
           "ground_plane": ground_plane, "stats": stats or {}}
    return validate(_jsonable(doc))


def matrices(doc: dict) -> np.ndarray:
    """The frames' camera-to-world matrices as an ``N x 4 x 4`` float64 array."""
    return np.array([f["matrix_world"] for f in doc["frames"]], dtype=np.float64)


def intrinsics_matrix(frame: dict) -> np.ndarray:
    """The 3x3 pinhole matrix K of a frame (OpenCV image axes, pixel-corner origin)."""
    f = float(frame["focal_px"])
    cx, cy = frame["principal_point_px"]
    return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], dtype=np.float64)
