"""The result of a camera solve, in Blender's world, and its cameras.json form."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared_protocol import camera_file


@dataclass
class PoseSolution:
    """Cameras (Blender camera-to-world), shared intrinsics, sparse points and statistics.

    Intrinsics are in full-resolution pixels (pixel-corner origin); ``k1``/``k2`` follow
    COLMAP's RADIAL model. ``reproj_error_px`` is NaN for frames that were not registered.
    """

    width: int
    height: int
    fps: float
    sources: list[str]
    matrix_world: np.ndarray
    focal_px: float
    principal_point_px: tuple[float, float]
    k1: float
    k2: float
    registered: np.ndarray
    reproj_error_px: np.ndarray
    points_xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    points_rgb: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))
    track_length: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    ground_plane: dict | None = None
    stats: dict = field(default_factory=dict)

    def to_document(self) -> dict:
        return camera_file.make_document(
            self.width, self.height, self.fps, self.matrix_world, self.focal_px,
            self.principal_point_px, sources=self.sources, registered=self.registered,
            reproj_error_px=[None if not np.isfinite(e) else float(e) for e in self.reproj_error_px],
            k1=self.k1, k2=self.k2, ground_plane=self.ground_plane, stats=self.stats)

    @classmethod
    def from_document(cls, doc: dict) -> "PoseSolution":
        frames = doc["frames"]
        mats = camera_file.matrices(doc)
        return cls(width=int(doc["width"]), height=int(doc["height"]), fps=float(doc["fps"]),
                   sources=[f["source"] for f in frames], matrix_world=mats,
                   focal_px=float(frames[0]["focal_px"]),
                   principal_point_px=tuple(frames[0]["principal_point_px"]),
                   k1=float(doc["distortion"]["k1"]), k2=float(doc["distortion"]["k2"]),
                   registered=np.array([f["registered"] for f in frames], bool),
                   reproj_error_px=np.array([np.nan if f["reproj_error_px"] is None
                                             else f["reproj_error_px"] for f in frames], float),
                   ground_plane=doc.get("ground_plane"), stats=dict(doc.get("stats", {})))

    def arrays(self) -> dict[str, np.ndarray]:
        """The solve as arrays for a job result."""
        n = len(self.sources)
        return {
            "matrix_world": np.asarray(self.matrix_world, np.float64),
            "focal_px": np.full(n, self.focal_px, np.float64),
            "principal_point_px": np.tile(np.asarray(self.principal_point_px, np.float64), (n, 1)),
            "registered": np.asarray(self.registered, bool),
            "reproj_error_px": np.asarray(self.reproj_error_px, np.float64),
            "points_xyz": np.asarray(self.points_xyz, np.float32),
            "points_rgb": np.asarray(self.points_rgb, np.uint8),
            "points_track_length": np.asarray(self.track_length, np.int32),
        }
