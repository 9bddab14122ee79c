"""Poses for frames that could not be registered: slerp/lerp between registered neighbours."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp


def fill_unregistered(c2w: dict[int, np.ndarray], n: int) -> np.ndarray:
    """``n`` camera-to-world matrices: known ones copied, the others interpolated in time
    (rotation by slerp, position linearly) or held at the nearest known pose at the ends."""
    if not c2w:
        raise ValueError("no registered frame to interpolate from")
    known = np.array(sorted(c2w))
    mats = np.array([c2w[k] for k in known])
    out = np.tile(np.eye(4), (n, 1, 1))
    out[known] = mats
    missing = np.setdiff1d(np.arange(n), known)
    if len(missing) == 0:
        return out
    if len(known) == 1:
        out[missing] = mats[0]
        return out
    slerp = Slerp(known, Rotation.from_matrix(mats[:, :3, :3]))
    t = np.clip(missing, known[0], known[-1])
    out[missing, :3, :3] = slerp(t).as_matrix()
    for axis in range(3):
        out[missing, axis, 3] = np.interp(t, known, mats[:, axis, 3])
    return out
