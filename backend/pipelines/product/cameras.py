"""The fixed cameras of a multi-view model's views (Blender camera-to-world, square images)."""
from __future__ import annotations

import math

import numpy as np

from backend.models.multiview import View, ViewSet


def look_at(position, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Blender camera-to-world (camera looks down -Z, +Y up) at ``position`` facing ``target``
    with the world's +Z up in the image."""
    p = np.asarray(position, np.float64)
    fwd = np.asarray(target, np.float64) - p
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-9:  # looking straight up or down: any right will do
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, -fwd, p
    return m


def orbit_position(azimuth_deg: float, elevation_deg: float, radius: float) -> np.ndarray:
    """Azimuth about +Z, counter-clockwise from above, 0 = on -Y; elevation above the horizon."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return radius * np.array([math.cos(e) * math.sin(a), -math.cos(e) * math.cos(a), math.sin(e)])


def focal_px(fov_deg: float, size: int) -> float:
    return 0.5 * size / math.tan(math.radians(fov_deg) / 2)


def intrinsics(fov_deg: float, size: int) -> np.ndarray:
    f = focal_px(fov_deg, size)
    return np.array([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]])


def view_cameras(views: ViewSet | list[View], size: int, elevation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(c2w [V,4,4], K [V,3,3])`` of the views at ``size`` px; ``elevation`` (the input photo's,
    degrees) is added to the views' elevations when the model states them relative to it."""
    vs = views.views if isinstance(views, ViewSet) else views
    add = elevation if isinstance(views, ViewSet) and views.relative_elevation else 0.0
    c2w = np.array([look_at(orbit_position(v.azimuth_deg, v.elevation_deg + add, v.radius)) for v in vs])
    K = np.array([intrinsics(v.fov_deg, size) for v in vs])
    return c2w, K


def turntable(n: int, elevation_deg: float, radius: float, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """``n`` cameras circling ``target`` once (Blender camera-to-world)."""
    t = np.asarray(target, np.float64)
    return np.array([look_at(t + orbit_position(360.0 * i / n, elevation_deg, radius), t) for i in range(n)])
