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


def frame_ranges(positions) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``."""
    parts, run = [], []
    for p in sorted(int(v) for v in positions):
        if run and p == run[-1] + 1:
            run.append(p)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [p]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(parts)


def interpolated_stats(registered: np.ndarray) -> dict:
    """The solve's record of interpolated frames: their positions and a one-line summary."""
    missing = np.flatnonzero(~np.asarray(registered, bool)).tolist()
    if not missing:
        line = "none (every frame has a camera of its own)"
    else:
        line = (f"{len(missing)} of {len(registered)} frames have no camera of their own; their "
                f"poses are interpolated from the neighbours: frames {frame_ranges(missing)}")
    return {"interpolated_frames": missing, "interpolated": line}
