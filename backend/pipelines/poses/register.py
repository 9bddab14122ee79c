"""Register every frame against the keyframe model by PnP (pycolmap absolute pose, LO-RANSAC)."""
from __future__ import annotations

from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pycolmap

from .sfm import position_of
from .tracking import TrackLookup, Tracks


def pnp_options(max_error_px: float):
    """pycolmap's absolute-pose estimation and refinement options for a fixed, known camera:
    RANSAC at ``max_error_px`` with a fixed seed, focal length and distortion not refined."""
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error = max_error_px
    est.ransac.random_seed = 0
    ref = pycolmap.AbsolutePoseRefinementOptions()
    ref.refine_focal_length = False
    ref.refine_extra_params = False
    return est, ref


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
    est, ref = pnp_options(max_error_px)
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


def _runs(positions: list[int]) -> list[list[int]]:
    """Consecutive runs of sorted frame positions."""
    runs: list[list[int]] = []
    for p in sorted(positions):
        if runs and p == runs[-1][-1] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def _model_observations(rec: pycolmap.Reconstruction, image) -> tuple[np.ndarray, np.ndarray]:
    """(full-resolution xy, point3D id) of an image's keypoints that observe a 3D point."""
    xy, pids = [], []
    for p2d in image.points2D:
        if p2d.has_point3D() and rec.exists_point3D(p2d.point3D_id):
            xy.append(p2d.xy)
            pids.append(p2d.point3D_id)
    return np.array(xy, np.float64).reshape(-1, 2), np.array(pids, np.int64)


def _chain(grays: list[np.ndarray], start_xy: np.ndarray, lk: dict, fb_max_px: float):
    """Track ``start_xy`` (solve pixels) from ``grays[0]`` through ``grays[1:]`` one step at a
    time with a forward-backward check. Yields (step, surviving indices, xy) per later frame."""
    import cv2

    pts = start_xy.astype(np.float32).reshape(-1, 2)
    alive = np.arange(len(pts))
    for k in range(1, len(grays)):
        if len(pts) == 0:
            return
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(grays[k - 1], grays[k], pts, None, **lk)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(grays[k], grays[k - 1], nxt, None, **lk)
        h, w = grays[k].shape[:2]
        ok = ((st.ravel() == 1) & (st2.ravel() == 1)
              & (np.linalg.norm(back - pts, axis=1) < fb_max_px)
              & (nxt[:, 0] >= 0) & (nxt[:, 1] >= 0) & (nxt[:, 0] < w - 1) & (nxt[:, 1] < h - 1))
        pts, alive = nxt[ok], alive[ok]
        yield k, alive, pts


def register_by_retracking(rec: pycolmap.Reconstruction, positions: list[int], load_gray,
                           scale: tuple[float, float], max_error_px: float = 4.0,
                           min_inliers: int = 30, window: int = 31, levels: int = 5,
                           fb_max_px: float = 1.0) -> dict[int, tuple[pycolmap.Rigid3d, float]]:
    """Register frames the tracker lost (motion blur, a sudden jerk) from their neighbours.

    For each run of unregistered ``positions``, the 3D points seen in the registered frame just
    before the run (and just after it) are tracked again into the run's frames, step by step,
    with a wide pyramidal KLT window (``window`` px, ``levels`` levels) that reaches through blur
    and large motion, and a forward-backward check of ``fb_max_px`` solve pixels. Each frame is
    then solved by PnP (LO-RANSAC and refinement) against those points; a point reached from
    both sides keeps the position tracked from the nearer neighbour.

    ``load_gray(positions)`` returns ``{position: grey image at the solve resolution}`` (called
    once, for all runs);
    ``scale`` is full-resolution pixels per solve pixel (x, y). Returns, per registered
    position, its cam_from_world and the mean reprojection error (px) of its PnP inliers.
    """
    import cv2

    camera = next(iter(rec.cameras.values()))
    by_pos = {position_of(im.name): im for im in rec.images.values() if im.has_pose}
    est, ref = pnp_options(max_error_px)
    lk = dict(winSize=(window, window), maxLevel=levels,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    sx, sy = scale
    out: dict[int, tuple[pycolmap.Rigid3d, float]] = {}
    todo = [(run, [s for s in (run[0] - 1, run[-1] + 1) if s in by_pos])
            for run in _runs(positions)]
    todo = [(run, sides) for run, sides in todo if sides]
    if not todo:
        return out
    grays = load_gray(sorted({p for run, sides in todo for p in run + sides}))  # one decode pass
    for run, sides in todo:
        # found[pos][point id] = (distance to the neighbour it was tracked from, full-res xy)
        found: dict[int, dict[int, tuple[int, np.ndarray]]] = {p: {} for p in run}
        for side in sides:
            xy, pids = _model_observations(rec, by_pos[side])
            if len(pids) < min_inliers:
                continue
            order = run if side < run[0] else run[::-1]
            chain = [grays[side]] + [grays[p] for p in order]
            start = np.stack([xy[:, 0] / sx - 0.5, xy[:, 1] / sy - 0.5], 1)
            for k, alive, pts in _chain(chain, start, lk, fb_max_px):
                pos = order[k - 1]
                full = np.stack([(pts[:, 0] + 0.5) * sx, (pts[:, 1] + 0.5) * sy], 1)
                for pid, p in zip(pids[alive].tolist(), full):
                    prev = found[pos].get(pid)
                    if prev is None or k < prev[0]:
                        found[pos][pid] = (k, p)
        for pos in run:
            if len(found[pos]) < min_inliers:
                continue
            pids = list(found[pos])
            pts2d = np.array([found[pos][p][1] for p in pids], np.float64)
            pts3d = np.array([rec.points3D[p].xyz for p in pids], np.float64)
            result = pycolmap.estimate_and_refine_absolute_pose(pts2d, pts3d, camera, est, ref)
            if result is None or int(result["num_inliers"]) < min_inliers:
                continue
            pose = result["cam_from_world"]
            mask = np.asarray(result["inlier_mask"], bool)
            proj = camera.img_from_cam((pts3d[mask] @ pose.rotation.matrix().T) + pose.translation)
            err = np.linalg.norm(np.asarray(proj)[:, :2] - pts2d[mask], axis=1)
            out[pos] = (pose, float(err.mean()))
    return out
