"""Pinhole intrinsics <-> Blender camera settings, and camera poses -> keyframe channels.

Blender cameras look down their local -Z with +Y up, the ``"blender"`` convention of
cameras.json. Pixel coordinates have (0, 0) at the top-left corner of the top-left pixel.
"""
from __future__ import annotations

import numpy as np

DEFAULT_SENSOR_MM = 36.0


def intrinsics_to_blender(width: int, height: int, focal_px, cx, cy,
                          sensor_width_mm: float = DEFAULT_SENSOR_MM) -> dict:
    """Blender camera data values that reproduce a pinhole camera exactly.

    The sensor is fitted horizontally (so portrait frames work too); the lens follows from
    ``focal_px / width = lens / sensor_width`` and the principal point becomes a lens shift,
    which Blender measures in units of the fitted (horizontal) image size.
    ``focal_px``, ``cx`` and ``cy`` may be scalars or arrays (one value per frame).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    f = np.asarray(focal_px, dtype=np.float64)
    if np.any(~np.isfinite(f)) or np.any(f <= 0):
        raise ValueError("focal length must be positive and finite")
    w, h = float(width), float(height)
    return {
        "sensor_fit": "HORIZONTAL",
        "sensor_width": float(sensor_width_mm),
        "sensor_height": float(sensor_width_mm) * h / w,
        "lens": f * sensor_width_mm / w,
        "shift_x": (w / 2.0 - np.asarray(cx, dtype=np.float64)) / w,
        "shift_y": (np.asarray(cy, dtype=np.float64) - h / 2.0) / w,
    }


def blender_to_intrinsics(width: int, height: int, lens: float, sensor_width: float,
                          shift_x: float, shift_y: float) -> tuple[float, float, float]:
    """Inverse of :func:`intrinsics_to_blender` for a horizontally fitted sensor: (f, cx, cy)."""
    w, h = float(width), float(height)
    return lens * w / sensor_width, w / 2.0 - shift_x * w, h / 2.0 + shift_y * w


def rotation_to_quaternion(r: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (w, x, y, z).

    Uses the numerically stable largest-diagonal branch (Shepperd's method) per matrix.
    """
    r = np.asarray(r, dtype=np.float64)
    m = r.reshape(-1, 3, 3)
    q = np.empty((m.shape[0], 4))
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    diag = np.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], axis=1)
    k = np.argmax(diag, axis=1)
    for case in range(4):
        s = k == case
        if not np.any(s):
            continue
        a = m[s]
        if case == 0:
            t = np.sqrt(1.0 + tr[s]) * 2.0
            q[s] = np.stack([0.25 * t, (a[:, 2, 1] - a[:, 1, 2]) / t,
                             (a[:, 0, 2] - a[:, 2, 0]) / t, (a[:, 1, 0] - a[:, 0, 1]) / t], 1)
        elif case == 1:
            t = np.sqrt(1.0 + a[:, 0, 0] - a[:, 1, 1] - a[:, 2, 2]) * 2.0
            q[s] = np.stack([(a[:, 2, 1] - a[:, 1, 2]) / t, 0.25 * t,
                             (a[:, 0, 1] + a[:, 1, 0]) / t, (a[:, 0, 2] + a[:, 2, 0]) / t], 1)
        elif case == 2:
            t = np.sqrt(1.0 + a[:, 1, 1] - a[:, 0, 0] - a[:, 2, 2]) * 2.0
            q[s] = np.stack([(a[:, 0, 2] - a[:, 2, 0]) / t, (a[:, 0, 1] + a[:, 1, 0]) / t,
                             0.25 * t, (a[:, 1, 2] + a[:, 2, 1]) / t], 1)
        else:
            t = np.sqrt(1.0 + a[:, 2, 2] - a[:, 0, 0] - a[:, 1, 1]) * 2.0
            q[s] = np.stack([(a[:, 1, 0] - a[:, 0, 1]) / t, (a[:, 0, 2] + a[:, 2, 0]) / t,
                             (a[:, 1, 2] + a[:, 2, 1]) / t, 0.25 * t], 1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.reshape(r.shape[:-2] + (4,))


def quaternion_continuity(q: np.ndarray) -> np.ndarray:
    """Flip signs so consecutive quaternions (N, 4) lie in the same hemisphere (dot >= 0).

    q and -q are the same rotation, but interpolating between keys of opposite sign spins
    the camera the long way round; this makes the sequence continuous.
    """
    q = np.array(q, dtype=np.float64, copy=True)
    if len(q) < 2:
        return q
    dots = np.einsum("ij,ij->i", q[1:], q[:-1])
    flips = np.concatenate([[False], dots < 0])
    sign = np.where(np.logical_xor.accumulate(flips), -1.0, 1.0)
    return q * sign[:, None]


def poses_to_channels(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-to-world matrices (N, 4, 4) -> locations (N, 3) and continuous quaternions (N, 4).

    The rotation part is orthonormalised (nearest rotation, via SVD) first, so slightly
    non-orthogonal solver output cannot introduce scale or shear.
    """
    m = np.asarray(matrices, dtype=np.float64)
    if m.ndim != 3 or m.shape[1:] != (4, 4):
        raise ValueError(f"expected (N, 4, 4) matrices, got shape {m.shape}")
    u, _, vt = np.linalg.svd(m[:, :3, :3])
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, 2] *= d[:, None]
    rot = u @ vt
    return m[:, :3, 3].copy(), quaternion_continuity(rotation_to_quaternion(rot))


def fps_to_blender(fps: float) -> tuple[int, float]:
    """Frames per second -> (scene.render.fps, scene.render.fps_base), e.g. 29.97 -> (30, 1.001)."""
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    base = max(1, int(round(fps)))
    return base, base / float(fps)
