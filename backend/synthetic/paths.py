"""Camera trajectories for the synthetic scenes (pure numpy, no bpy).

Each path returns an ``(N, 4, 4)`` array of camera-to-world matrices in Blender's convention:
world +Z up, metres; the camera looks down its local -Z with +Y up.
"""
from __future__ import annotations

import numpy as np

PATHS = ("handheld", "pan", "orbit")
UP = np.array([0.0, 0.0, 1.0])


def look_at(centre, target) -> np.ndarray:
    """Camera-to-world matrix at ``centre`` looking at ``target`` with no roll (+Y towards +Z)."""
    centre = np.asarray(centre, float)
    fwd = np.asarray(target, float) - centre
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, UP)
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, -fwd, centre
    return m


def rotation_xyz(angles) -> np.ndarray:
    """Rotation matrix for small angles (radians) about x, then y, then z."""
    ax, ay, az = angles
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _shake(rng: np.random.Generator, n: int, fps: float, dims: int) -> np.ndarray:
    """Smooth zero-mean hand shake: a few 1-6 Hz sinusoids per axis, RMS 1 per axis."""
    t = np.arange(n) / fps
    out = np.zeros((n, dims))
    for d in range(dims):
        freqs = rng.uniform(1.0, 6.0, size=4)
        phases = rng.uniform(0, 2 * np.pi, size=4)
        amps = rng.uniform(0.5, 1.0, size=4)
        out[:, d] = (amps[None] * np.sin(2 * np.pi * freqs[None] * t[:, None] + phases[None])).sum(1)
        out[:, d] /= np.sqrt(0.5 * (amps ** 2).sum())
    return out


def camera_path(kind: str, frames: int, fps: float = 24.0, seed: int = 0, height: float = 1.6,
                distance: float = 2.6, extent: float = 0.8, target=(0.0, 0.0, 0.2),
                jitter_m: float = 0.0015, jitter_deg: float = 0.2, pan_deg: float = 30.0,
                orbit_deg: float = 60.0) -> np.ndarray:
    """Camera-to-world matrices for ``frames`` frames of the named path.

    ``handheld``: the camera moves ``extent`` metres sideways and ``extent/3`` forward while
    looking at a slowly drifting target, with smooth shake of RMS ``jitter_m`` (position) and
    ``jitter_deg`` (rotation). ``pan``: pure rotation about the fixed camera centre, yawing by
    ``pan_deg`` in total (tripod). ``orbit``: an arc of ``orbit_deg`` around ``target`` at
    horizontal radius ``distance``. All start at ``distance`` m from the target on the -Y side,
    at ``height`` m above the ground, so the camera looks down on the scene.
    """
    if kind not in PATHS:
        raise ValueError(f"unknown camera path {kind!r}; expected one of {', '.join(PATHS)}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    rng = np.random.default_rng(seed)
    target = np.asarray(target, float)
    s = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    mats = np.empty((frames, 4, 4))
    if kind == "handheld":
        pos_shake = _shake(rng, frames, fps, 3) * jitter_m
        rot_shake = np.deg2rad(_shake(rng, frames, fps, 3) * jitter_deg)
        for i, u in enumerate(s):
            centre = np.array([-extent / 2 + extent * u, -distance + extent / 3 * u, height - 0.05 * u])
            tgt = target + np.array([0.15 * np.sin(np.pi * u), 0.1 * u, 0.0])
            m = look_at(centre + pos_shake[i], tgt)
            m[:3, :3] = m[:3, :3] @ rotation_xyz(rot_shake[i])
            mats[i] = m
    elif kind == "pan":
        centre = np.array([0.0, -distance, height])
        base = target - centre
        for i, u in enumerate(s):
            yaw = np.deg2rad(pan_deg) * (u - 0.5)
            c, sn = np.cos(yaw), np.sin(yaw)
            d = np.array([c * base[0] - sn * base[1], sn * base[0] + c * base[1], base[2]])
            mats[i] = look_at(centre, centre + d)
    else:
        for i, u in enumerate(s):
            a = -np.pi / 2 + np.deg2rad(orbit_deg) * (u - 0.5)
            centre = target + np.array([distance * np.cos(a), distance * np.sin(a), height - target[2]])
            mats[i] = look_at(centre, target)
    return mats
