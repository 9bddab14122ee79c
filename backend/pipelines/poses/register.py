"""Register every frame against the keyframe model by PnP (pycolmap absolute pose, LO-RANSAC)."""
from __future__ import annotations

from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pycolmap

from .sfm import position_of
from .tracking import TrackLookup, Tracks


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
                    progress=None, threads: int = 1,
                    max_points: int = 400) -> dict[int, pycolmap.Rigid3d]:
    """cam_from_world for each of ``positions`` that PnP can register (others are left out).

    Frames are solved in ``threads`` threads (pycolmap releases the GIL). A frame with more
    than ``max_points`` 2D-3D correspondences uses an evenly spread subset of them: the pose
    only seeds the bundle adjustment, which then uses every kept observation.
    """
    camera = next(iter(rec.cameras.values()))
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error = max_error_px
    est.ransac.random_seed = 0
    ref = pycolmap.AbsolutePoseRefinementOptions()
    ref.refine_focal_length = False
    ref.refine_extra_params = False
    existing = {t: p for t, p in track_to_point.items() if rec.exists_point3D(p)}
    lookup = TrackLookup(existing)
    xyz_of = {pid: rec.points3D[pid].xyz for pid in set(existing.values())}

    def solve_one(pos: int):
        obs = tracks.frames[pos]
        idx, pids = lookup.points(obs.ids)
        if len(idx) < max(6, min_inliers):
            return None
        if len(idx) > max_points:
            keep = np.unique(np.linspace(0, len(idx) - 1, max_points).round().astype(np.int64))
            idx, pids = idx[keep], pids[keep]
        pts3d = np.array([xyz_of[p] for p in pids.tolist()], np.float64)
        result = pycolmap.estimate_and_refine_absolute_pose(
            np.ascontiguousarray(obs.xy[idx], np.float64), pts3d, camera, est, ref)
        if result is not None and int(result["num_inliers"]) >= min_inliers:
            return result["cam_from_world"]
        return None

    out = {}
    pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="register")
    try:
        futures = [pool.submit(solve_one, pos) for pos in positions]
        for n, (pos, fut) in enumerate(zip(positions, futures)):
            pose = fut.result()
            if pose is not None:
                out[pos] = pose
            if progress is not None and n % 10 == 0:
                progress.update(n / max(1, len(positions)), f"registered {len(out)}/{n + 1}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return out
