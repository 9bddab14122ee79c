"""Read and validate cameras.json (version 1, ``"convention": "blender"``) into arrays.

The format is the camera solve's output contract: image size, fps, one entry per frame with a
camera-to-world matrix (camera looks down -Z, +Y up, world +Z up), focal length and principal
point in pixels, an optional ground plane and distortion. Errors are one line naming the file.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class CameraFileError(ValueError):
    """cameras.json is missing, unreadable or inconsistent."""


@dataclass
class CameraTrack:
    """A solved camera: per-frame arrays, registered frames only, sorted by frame."""

    width: int
    height: int
    fps: float
    frames: np.ndarray            # (N,) int: cameras.json frame numbers
    sources: list                 # (N,) video frame index (int) or image name (str)
    matrices: np.ndarray          # (N, 4, 4) camera-to-world, Blender camera axes
    focal_px: np.ndarray          # (N,)
    principal_px: np.ndarray      # (N, 2)
    ground_point: np.ndarray | None = None
    ground_normal: np.ndarray | None = None
    distortion: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    dropped: int = 0              # frames present but not registered

    @property
    def video_frames(self) -> np.ndarray:
        """Video frame index of each camera: ``source`` when it is an integer, else ``frame``."""
        out = [s if isinstance(s, int) and not isinstance(s, bool) else f
               for s, f in zip(self.sources, self.frames.tolist())]
        return np.asarray(out, dtype=np.int64)


def _num(value, what: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CameraFileError(f"{path}: {what} must be a finite number, got {value!r}")
    return float(value)


def parse(data: dict, path: Path | str = "cameras.json") -> CameraTrack:
    """Validate a decoded cameras.json document and convert it to a :class:`CameraTrack`."""
    path = Path(path)
    if not isinstance(data, dict):
        raise CameraFileError(f"{path}: top level must be a JSON object")
    if data.get("version") != 1:
        raise CameraFileError(f"{path}: unsupported version {data.get('version')!r} (expected 1)")
    if data.get("convention", "blender") != "blender":
        raise CameraFileError(f"{path}: convention must be 'blender', got {data.get('convention')!r}")
    width, height = data.get("width"), data.get("height")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise CameraFileError(f"{path}: width and height must be positive integers")
    fps = _num(data.get("fps", 24), "fps", path)
    if fps <= 0:
        raise CameraFileError(f"{path}: fps must be positive")
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise CameraFileError(f"{path}: 'frames' must be a non-empty list")
    rows, dropped = [], 0
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict) or not isinstance(fr.get("frame"), int):
            raise CameraFileError(f"{path}: frames[{i}] needs an integer 'frame'")
        if not fr.get("registered", True):
            dropped += 1
            continue
        m = np.asarray(fr.get("matrix_world"), dtype=np.float64) if fr.get("matrix_world") is not None else None
        if m is None or m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise CameraFileError(f"{path}: frames[{i}].matrix_world must be a finite 4x4 matrix")
        r = m[:3, :3]
        if np.max(np.abs(r.T @ r - np.eye(3))) > 1e-3 or np.linalg.det(r) <= 0:
            raise CameraFileError(f"{path}: frames[{i}].matrix_world is not a rotation plus translation")
        f = _num(fr.get("focal_px"), f"frames[{i}].focal_px", path)
        if f <= 0:
            raise CameraFileError(f"{path}: frames[{i}].focal_px must be positive")
        pp = fr.get("principal_point_px", [width / 2.0, height / 2.0])
        if not isinstance(pp, (list, tuple)) or len(pp) != 2:
            raise CameraFileError(f"{path}: frames[{i}].principal_point_px must be [cx, cy]")
        cx = _num(pp[0], f"frames[{i}].principal_point_px", path)
        cy = _num(pp[1], f"frames[{i}].principal_point_px", path)
        rows.append((fr["frame"], fr.get("source", fr["frame"]), m, f, (cx, cy)))
    if not rows:
        raise CameraFileError(f"{path}: no registered frames")
    rows.sort(key=lambda r: r[0])
    nums = [r[0] for r in rows]
    if len(set(nums)) != len(nums):
        raise CameraFileError(f"{path}: duplicate frame numbers")
    gp_point = gp_normal = None
    gp = data.get("ground_plane")
    if gp is not None:
        try:
            gp_point = np.asarray(gp["point"], dtype=np.float64).reshape(3)
            gp_normal = np.asarray(gp["normal"], dtype=np.float64).reshape(3)
        except (KeyError, TypeError, ValueError):
            raise CameraFileError(f"{path}: ground_plane needs 'point' and 'normal' 3-vectors") from None
        n = np.linalg.norm(gp_normal)
        if not (np.all(np.isfinite(gp_point)) and np.isfinite(n) and n > 0):
            raise CameraFileError(f"{path}: ground_plane must be finite with a non-zero normal")
        gp_normal = gp_normal / n
    return CameraTrack(
        width=width, height=height, fps=fps,
        frames=np.asarray(nums, dtype=np.int64),
        sources=[r[1] for r in rows],
        matrices=np.stack([r[2] for r in rows]),
        focal_px=np.asarray([r[3] for r in rows]),
        principal_px=np.asarray([r[4] for r in rows]),
        ground_point=gp_point, ground_normal=gp_normal,
        distortion=dict(data.get("distortion") or {}), stats=dict(data.get("stats") or {}),
        dropped=dropped,
    )


def load(path: Path | str) -> CameraTrack:
    """Read and validate a cameras.json file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CameraFileError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CameraFileError(f"{path}: cannot read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CameraFileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return parse(data, path)
