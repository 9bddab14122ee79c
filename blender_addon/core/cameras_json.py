"""cameras.json -> :class:`CameraTrack` arrays for the Blender import.

Reading and validation are ``shared_protocol.camera_file``'s (the format's single owner);
this module keeps the registered frames, sorted, as numpy arrays and maps each camera to
its video frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..vendor import module

camera_file = module("camera_file")
CameraFileError = camera_file.CameraFileError


@dataclass
class CameraTrack:
    """A solved camera: per-frame arrays of the registered frames, sorted by frame."""

    width: int
    height: int
    fps: float                    # 0 for image folders
    frames: np.ndarray            # (N,) int: cameras.json frame numbers
    sources: list[str]            # (N,) video frame index as text, or image file name
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
        return np.asarray([int(s) if s.strip().isdigit() else f
                           for s, f in zip(self.sources, self.frames.tolist())], dtype=np.int64)


def from_document(doc: dict, path: Path | str = "cameras.json") -> CameraTrack:
    """Convert a validated cameras.json document."""
    rows = sorted((fr for fr in doc["frames"] if fr.get("registered", True)), key=lambda fr: fr["frame"])
    if not rows:
        raise CameraFileError(f"{path}: no registered frames")
    nums = [fr["frame"] for fr in rows]
    if len(set(nums)) != len(nums):
        raise CameraFileError(f"{path}: duplicate frame numbers")
    plane = doc.get("ground_plane")
    return CameraTrack(
        width=int(doc["width"]), height=int(doc["height"]), fps=float(doc.get("fps") or 0.0),
        frames=np.asarray(nums, dtype=np.int64),
        sources=[str(fr["source"]) for fr in rows],
        matrices=np.array([fr["matrix_world"] for fr in rows], dtype=np.float64),
        focal_px=np.array([fr["focal_px"] for fr in rows], dtype=np.float64),
        principal_px=np.array([fr["principal_point_px"] for fr in rows], dtype=np.float64),
        ground_point=None if plane is None else np.asarray(plane["point"], dtype=np.float64),
        ground_normal=None if plane is None else np.asarray(plane["normal"], dtype=np.float64),
        distortion=dict(doc.get("distortion") or {}), stats=dict(doc.get("stats") or {}),
        dropped=len(doc["frames"]) - len(rows),
    )


def load(path: Path | str) -> CameraTrack:
    """Read, validate and convert a cameras.json file; errors name the file and field."""
    return from_document(camera_file.read(path), path)
