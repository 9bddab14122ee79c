"""Solved cameras -> Blender camera settings and keyframe channels.

Built on ``shared_protocol.conventions`` (the project's single definition of camera axes,
intrinsics <-> lens/sensor/shift and quaternion order). Blender cameras look down their
local -Z with +Y up, the ``"blender"`` convention of cameras.json.
"""
from __future__ import annotations

import numpy as np

from ..vendor import module

conventions = module("conventions")

DEFAULT_SENSOR_MM = 36.0


def intrinsics_to_blender(width: int, height: int, focal_px, cx, cy,
                          sensor_width_mm: float = DEFAULT_SENSOR_MM) -> dict:
    """Blender camera data values (lens, sensor, shift) reproducing a square-pixel pinhole.

    The sensor is fitted horizontally so landscape and portrait frames follow the same rule.
    ``focal_px``, ``cx`` and ``cy`` may be scalars or per-frame arrays; the result's lens and
    shifts are arrays of the broadcast length.
    """
    f, cx, cy = np.broadcast_arrays(np.atleast_1d(np.asarray(focal_px, dtype=np.float64)),
                                    np.atleast_1d(np.asarray(cx, dtype=np.float64)),
                                    np.atleast_1d(np.asarray(cy, dtype=np.float64)))
    cams = [conventions.intrinsics_to_blender(
        conventions.Intrinsics(float(fi), float(fi), float(xi), float(yi), int(width), int(height)),
        sensor_fit="HORIZONTAL", sensor_size_mm=sensor_width_mm) for fi, xi, yi in _unique_rows(f, cx, cy)]
    lookup = {key: cam for key, cam in zip(_unique_rows(f, cx, cy), cams)}
    rows = [lookup[(a, b, c)] for a, b, c in zip(f.tolist(), cx.tolist(), cy.tolist())]
    first = rows[0]
    return {
        "sensor_fit": first.sensor_fit,
        "sensor_width": first.sensor_width,
        "sensor_height": first.sensor_height,
        "lens": np.array([r.lens for r in rows]),
        "shift_x": np.array([r.shift_x for r in rows]),
        "shift_y": np.array([r.shift_y for r in rows]),
    }


def _unique_rows(*cols) -> list[tuple[float, ...]]:
    seen: dict[tuple[float, ...], None] = {}
    for row in zip(*(c.tolist() for c in cols)):
        seen.setdefault(row, None)
    return list(seen)


def poses_to_channels(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-to-world matrices (N, 4, 4) -> locations (N, 3) and sign-continuous (w, x, y, z)
    quaternions (N, 4).

    The rotation part is first replaced by its nearest rotation (SVD), so slightly
    non-orthogonal solver output cannot introduce scale or shear.
    """
    m = np.asarray(matrices, dtype=np.float64)
    if m.ndim != 3 or m.shape[1:] != (4, 4):
        raise ValueError(f"expected (N, 4, 4) matrices, got shape {m.shape}")
    u, _, vt = np.linalg.svd(m[:, :3, :3])
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, 2] *= d[:, None]
    rot = u @ vt
    q = conventions.quaternion_sign_continuity(conventions.matrix_to_quaternion(rot))
    return m[:, :3, 3].copy(), q


def fps_to_blender(fps: float) -> tuple[int, float]:
    """Frames per second -> (scene.render.fps, scene.render.fps_base), e.g. 29.97 -> (30, 1.001)."""
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    base = max(1, int(round(fps)))
    return base, base / float(fps)
