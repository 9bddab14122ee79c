"""Camera trajectories of a scene, in its working frame (Blender cameras; the first photo's
camera at the identity for one photo, the solve's world for several).

- One photo: a spiral that starts at the photo's camera, winds ``turns`` times about its
  optical axis with a radius growing to ``radius`` while moving ``forward`` along it, every
  camera looking at the point of the axis at the photo's median depth.
- Several photos: the solved cameras joined in their order, rotations by slerp and positions
  linearly.

Both are functions of a parameter ``t`` in [0, 1], so the generated views, the held-out views
between them and the preview path are samples of one curve.
"""
from __future__ import annotations

import numpy as np


def look_at_y_up(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Blender camera-to-world at ``eye`` looking at ``target``, its +Y towards ``up``."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    fwd = target - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(right, fwd), -fwd, eye
    return m


def spiral(t, radius: float, forward: float, target_depth: float, turns: float = 1.0) -> np.ndarray:
    """(len(t), 4, 4) cameras of the one-photo spiral (photo camera at the identity, looking
    down -Z) at parameters ``t`` in [0, 1]."""
    t = np.atleast_1d(np.asarray(t, np.float64))
    ang = 2 * np.pi * turns * t
    eyes = np.stack([radius * t * np.cos(ang), radius * t * np.sin(ang), -forward * t], -1)
    target = np.array([0.0, 0.0, -target_depth])
    return np.array([look_at_y_up(e, target) for e in eyes])


def through(cameras: np.ndarray, t) -> np.ndarray:
    """(len(t), 4, 4) cameras on the path through ``cameras`` (K >= 2, in order) at ``t`` in
    [0, 1] (camera k at t = k / (K - 1))."""
    from scipy.spatial.transform import Rotation, Slerp

    cams = np.asarray(cameras, np.float64)
    k = np.linspace(0.0, 1.0, len(cams))
    t = np.clip(np.atleast_1d(np.asarray(t, np.float64)), 0.0, 1.0)
    out = np.tile(np.eye(4), (len(t), 1, 1))
    out[:, :3, :3] = Slerp(k, Rotation.from_matrix(cams[:, :3, :3]))(t).as_matrix()
    for axis in range(3):
        out[:, axis, 3] = np.interp(t, k, cams[:, axis, 3])
    return out


def schedule(views: int) -> tuple[np.ndarray, np.ndarray]:
    """Parameters of the ``views`` generated views after the photo (t in (0, 1]) and of the
    held-out views halfway between consecutive ones (photo included)."""
    t = np.linspace(0.0, 1.0, views + 1)
    return t[1:], 0.5 * (t[1:] + t[:-1])
