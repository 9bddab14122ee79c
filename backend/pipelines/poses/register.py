"""Register every frame against the keyframe model by PnP (pycolmap absolute pose, LO-RANSAC)."""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pycolmap

from .sfm import position_of
from .tracking import Tracks


def track_points(rec: pycolmap.Reconstruction, tracks: Tracks) -> dict[int, int]:
    """Map track id -> point3D id from the keyframes the model registered (majority vote)."""
    votes: dict[int, Counter] = defaultdict(Counter)
    for image in rec.images.values():
        if not image.has_pose:
            continue
        obs = tracks.frames[position_of(image.name)]
        for idx, p2d in enumerate(image.points2D):
            if p2d.has_point3D():
                votes[int(obs.ids[idx])][int(p2d.point3D_id)] += 1
    return {tid: c.most_common(1)[0][0] for tid, c in votes.items()}


def registered_poses(rec: pycolmap.Reconstruction) -> dict[int, pycolmap.Rigid3d]:
    """cam_from_world of each registered image, keyed by frame position."""
    return {position_of(im.name): im.cam_from_world() for im in rec.images.values() if im.has_pose}


def register_frames(rec: pycolmap.Reconstruction, tracks: Tracks, track_to_point: dict[int, int],
                    positions: list[int], max_error_px: float = 4.0, min_inliers: int = 15,
                    progress=None) -> dict[int, pycolmap.Rigid3d]:
    """cam_from_world for each of ``positions`` that PnP can register (others are left out)."""
    camera = next(iter(rec.cameras.values()))
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error = max_error_px
    est.ransac.random_seed = 0
    ref = pycolmap.AbsolutePoseRefinementOptions()
    ref.refine_focal_length = False
    ref.refine_extra_params = False
    xyz_of = {pid: rec.points3D[pid].xyz for pid in set(track_to_point.values())
              if rec.exists_point3D(pid)}
    out = {}
    for n, pos in enumerate(positions):
        obs = tracks.frames[pos]
        pts2d, pts3d = [], []
        for idx, tid in enumerate(obs.ids.tolist()):
            pid = track_to_point.get(tid)
            if pid is not None and pid in xyz_of:
                pts2d.append(obs.xy[idx])
                pts3d.append(xyz_of[pid])
        if len(pts2d) >= max(6, min_inliers):
            result = pycolmap.estimate_and_refine_absolute_pose(
                np.asarray(pts2d, np.float64), np.asarray(pts3d, np.float64), camera, est, ref)
            if result is not None and int(result["num_inliers"]) >= min_inliers:
                out[pos] = result["cam_from_world"]
        if progress is not None and n % 10 == 0:
            progress.update(n / max(1, len(positions)), f"registered {len(out)}/{n + 1}")
    return out
