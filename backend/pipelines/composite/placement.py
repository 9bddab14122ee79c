"""Product anchor placement and anchor projection (pure numpy).

The anchor is where the ground plane meets the viewing ray through pixel ``(u, v)`` of one
solved camera. Cameras are cameras.json frames: ``matrix_world`` camera-to-world with Blender
camera axes (looking down -Z, +Y up), ``focal_px``, ``principal_point_px`` and the document's
``radial2`` distortion. Pixel (0, 0) is the top-left corner of the top-left pixel; pixel centres
lie at +0.5 (docs/conventions.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class PlacementError(ValueError):
    """The requested pixel does not see the ground plane (or the camera is unusable)."""


@dataclass(frozen=True)
class PinholeCamera:
    """One cameras.json frame as arrays: camera-to-world (Blender axes), intrinsics, radial2."""

    c2w: np.ndarray
    focal_px: float
    cx: float
    cy: float
    k1: float = 0.0
    k2: float = 0.0

    @classmethod
    def from_frame(cls, frame: dict, distortion: dict | None = None) -> "PinholeCamera":
        d = distortion or {}
        cx, cy = frame["principal_point_px"]
        return cls(np.asarray(frame["matrix_world"], np.float64), float(frame["focal_px"]), float(cx), float(cy),
                   float(d.get("k1", 0.0)), float(d.get("k2", 0.0)))

    def _distort(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r2 = x * x + y * y
        s = 1.0 + self.k1 * r2 + self.k2 * r2 * r2
        return x * s, y * s

    def _undistort(self, xd: float, yd: float) -> tuple[float, float]:
        """Invert the radial2 model by fixed-point iteration (converges for realistic k1, k2)."""
        x, y = xd, yd
        for _ in range(50):
            r2 = x * x + y * y
            s = 1.0 + self.k1 * r2 + self.k2 * r2 * r2
            nx, ny = xd / s, yd / s
            if abs(nx - x) + abs(ny - y) < 1e-15:
                x, y = nx, ny
                break
            x, y = nx, ny
        return x, y

    def ray(self, u: float, v: float) -> tuple[np.ndarray, np.ndarray]:
        """World origin and unit direction of the viewing ray through pixel ``(u, v)``."""
        x, y = self._undistort((u - self.cx) / self.focal_px, (v - self.cy) / self.focal_px)
        d_cam = np.array([x, -y, -1.0])  # OpenCV (x, y, 1) in Blender camera axes
        d = self.c2w[:3, :3] @ d_cam
        return self.c2w[:3, 3].copy(), d / np.linalg.norm(d)

    def project(self, points) -> tuple[np.ndarray, np.ndarray]:
        """Pixels ``(N, 2)`` of world points ``(N, 3)`` and their planar depth ``(N,)``
        (positive in front of the camera)."""
        p = np.atleast_2d(np.asarray(points, np.float64))
        w2c = np.linalg.inv(self.c2w)  # exact inverse of the matrix the ray uses
        pc = p @ w2c[:3, :3].T + w2c[:3, 3]  # Blender camera axes
        z = -pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            x, y = pc[:, 0] / z, -pc[:, 1] / z
        xd, yd = self._distort(x, y)
        return np.stack([self.focal_px * xd + self.cx, self.focal_px * yd + self.cy], 1), z


def intersect_plane(origin, direction, plane_point, plane_normal) -> np.ndarray:
    """Where the ray meets the plane; raises :class:`PlacementError` when it points away or
    runs parallel to it."""
    o, d = np.asarray(origin, np.float64), np.asarray(direction, np.float64)
    p0, n = np.asarray(plane_point, np.float64), np.asarray(plane_normal, np.float64)
    n = n / np.linalg.norm(n)
    denom = float(d @ n)
    if abs(denom) < 1e-9:
        raise PlacementError("the viewing ray runs parallel to the ground plane")
    t = float((p0 - o) @ n) / denom
    if t <= 0:
        raise PlacementError("the viewing ray does not meet the ground plane in front of the camera")
    return o + t * d


def default_pixel(width: int, height: int) -> tuple[float, float]:
    """Centre of the lower third of the frame."""
    return width / 2.0, height * 5.0 / 6.0


def frame_for_video_index(doc: dict, index: int) -> dict | None:
    """The registered cameras.json frame showing video frame ``index`` (by ``source``, else
    ``frame``), or None."""
    for fr in doc["frames"]:
        src = str(fr.get("source", ""))
        vid = int(src) if src.strip().isdigit() else int(fr["frame"])
        if vid == index and fr.get("registered", True):
            return fr
    return None


def ground_of(doc: dict) -> tuple[np.ndarray, np.ndarray]:
    """The document's ground plane (point, unit normal); world z = 0 when it has none."""
    plane = doc.get("ground_plane")
    if not plane:
        return np.zeros(3), np.array([0.0, 0.0, 1.0])
    n = np.asarray(plane["normal"], np.float64)
    return np.asarray(plane["point"], np.float64), n / np.linalg.norm(n)


def anchor_from_pixel(doc: dict, u: float, v: float, frame: int = 0) -> np.ndarray:
    """World anchor where the ground plane of ``doc`` meets pixel ``(u, v)`` of video frame
    ``frame``; raises :class:`PlacementError` naming the pixel and frame when it cannot."""
    fr = frame_for_video_index(doc, frame)
    if fr is None:
        raise PlacementError(f"frame {frame} has no solved camera")
    w, h = int(doc["width"]), int(doc["height"])
    if not (0.0 <= u <= w and 0.0 <= v <= h):
        raise PlacementError(f"pixel ({u:g}, {v:g}) lies outside the {w}x{h} frame")
    cam = PinholeCamera.from_frame(fr, doc.get("distortion"))
    origin, direction = cam.ray(u, v)
    point, normal = ground_of(doc)
    try:
        return intersect_plane(origin, direction, point, normal)
    except PlacementError as exc:
        raise PlacementError(f"pixel ({u:g}, {v:g}) of frame {frame}: {exc}") from None


def anchor_track(doc: dict, anchor) -> tuple[np.ndarray, np.ndarray]:
    """``(video_frames (N,), pixels (N, 2))``: the anchor's projection in every registered frame."""
    rows = []
    for fr in doc["frames"]:
        if not fr.get("registered", True):
            continue
        src = str(fr.get("source", ""))
        vid = int(src) if src.strip().isdigit() else int(fr["frame"])
        px, _ = PinholeCamera.from_frame(fr, doc.get("distortion")).project(anchor)
        rows.append((vid, px[0]))
    rows.sort(key=lambda r: r[0])
    return np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.float64).reshape(-1, 2)
