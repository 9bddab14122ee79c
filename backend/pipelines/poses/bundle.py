"""One bundle adjustment over all registered frames with shared intrinsics (pycolmap / Ceres).

The focal length and radial k1, k2 are refined (focal kept fixed when the user gave it); the
principal point stays at the image centre. Whether k1, k2 are estimated at all is decided on the
keyframe model (:func:`distortion_is_significant`): on short or weakly textured clips free
distortion otherwise trades off against focal length and rotation. Observations that still reproject badly after a
robust first pass are removed and the problem is solved again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pycolmap

from .sfm import image_name, position_of
from .tracking import TrackLookup, Tracks


# Observations per point in the robust first round of the all-frame adjustment. That round only
# has to expose outliers, which it does as well from every k-th frame of a long track; the
# observations held back are checked against its result and join the final round.
ROBUST_OBS_PER_POINT = 40


@dataclass
class FrameModel:
    """All posed frames observing the keyframe model's points, ready for :func:`adjust`.

    ``rec`` holds the robust round's observations; ``table`` lists every observation of the
    final round as rows of (image id, point2D index, point3D id, x, y), with ``pending`` marking
    the rows not yet in ``rec``. ``frames_seen`` is, per point id, the number of frames that
    saw the point.
    """
    rec: pycolmap.Reconstruction
    table: np.ndarray
    pending: np.ndarray
    frames_seen: dict[int, int]


def _every_kth(count: int, cap: int | None, offset: int) -> np.ndarray:
    """Indices into ``count`` observations keeping every k-th (k so that at most about ``cap``
    remain), starting at ``offset`` mod k; all of them without a cap."""
    step = -(-count // cap) if cap else 1
    return np.arange(offset % step, count, step) if step > 1 else np.arange(count)


def build_model(key_rec: pycolmap.Reconstruction, tracks: Tracks, poses: dict[int, pycolmap.Rigid3d],
                track_to_point: dict[int, int], max_obs_per_point: int | None = None,
                robust_obs_per_point: int | None = ROBUST_OBS_PER_POINT) -> FrameModel:
    """Every posed frame observing the keyframe model's points.

    With ``max_obs_per_point`` a point seen in more frames keeps every k-th observation (offset
    by the point id, so each frame keeps about the same share of its points); ``None`` keeps
    them all. Thinning bounds the adjustment's time; keeping all lowers the trajectory error,
    since tracked positions are correlated over neighbouring frames (see ``SolveOptions``).
    Of the kept observations, every k-th up to ``robust_obs_per_point`` goes into the model for
    the robust round and the rest wait in the table (``pending``).
    """
    rec = pycolmap.Reconstruction()
    camera = next(iter(key_rec.cameras.values()))
    cam = pycolmap.Camera(model=camera.model, width=camera.width, height=camera.height,
                          params=camera.params, camera_id=1)
    rec.add_camera_with_trivial_rig(cam)
    lookup = TrackLookup(track_to_point)
    img_ids, idxs, pids, xys = [], [], [], []
    for image_id, pos in enumerate(sorted(poses), start=1):
        obs = tracks.frames[pos]
        image = pycolmap.Image(name=image_name(pos), keypoints=obs.xy.astype(np.float64),
                               camera_id=1, image_id=image_id)
        rec.add_image_with_trivial_frame(image, poses[pos])
        idx, pid = lookup.points(obs.ids)
        pid, first = np.unique(pid, return_index=True)  # one observation of a point per frame
        img_ids.append(np.full(len(pid), image_id))
        idxs.append(idx[first])
        pids.append(pid)
        xys.append(obs.xy[idx[first]])
    if not pids:
        return FrameModel(rec, np.zeros((0, 5)), np.zeros(0, bool), {})
    img_ids, idxs, pids = (np.concatenate(a) for a in (img_ids, idxs, pids))
    xys = np.concatenate(xys).astype(np.float64)
    order = np.lexsort((img_ids, pids))
    img_ids, idxs, pids, xys = img_ids[order], idxs[order], pids[order], xys[order]
    uniq, starts, counts = np.unique(pids, return_index=True, return_counts=True)
    frames_seen: dict[int, int] = {}
    rows, pending = [], []
    for pid, a, count in zip(uniq.tolist(), starts.tolist(), counts.tolist()):
        if count < 2 or not key_rec.exists_point3D(pid):
            continue
        kept = a + _every_kth(count, max_obs_per_point, pid)
        robust = np.zeros(len(kept), bool)
        robust[_every_kth(len(kept), robust_obs_per_point, pid)] = True
        elems = [pycolmap.TrackElement(int(img_ids[k]), int(idxs[k])) for k in kept[robust]]
        p = key_rec.points3D[pid]
        new_id = rec.add_point3D(p.xyz, pycolmap.Track(elems), p.color)
        frames_seen[new_id] = count
        rows.append(np.column_stack([img_ids[kept], idxs[kept], np.full(len(kept), new_id),
                                     xys[kept]]))
        pending.append(~robust)
    if not rows:
        return FrameModel(rec, np.zeros((0, 5)), np.zeros(0, bool), frames_seen)
    return FrameModel(rec, np.vstack(rows).astype(np.float64), np.concatenate(pending),
                      frames_seen)


# The all-frame adjustment solves the reduced camera system iteratively (conjugate gradients on
# the implicit Schur complement, Schur-Jacobi preconditioned): each step costs in proportion to
# the observations, where forming the Schur complement explicitly costs in proportion to the
# square of the observations per point, and every video frame sees most points.


def _ba_options(fixed_focal: bool, loss_scale_px: float | None, threads: int,
                max_iterations: int = 50, function_tolerance: float = 1e-9,
                refine_distortion: bool = True, n_frames: int = 0):
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_focal_length = not fixed_focal
    opts.refine_extra_params = refine_distortion
    opts.refine_principal_point = False
    opts.print_summary = False
    if loss_scale_px:
        opts.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
        opts.ceres.loss_function_scale = loss_scale_px
    opts.ceres.solver_options.num_threads = threads
    if n_frames:
        solver = opts.ceres.solver_options
        opts.ceres.auto_select_solver_type = False
        solver.linear_solver_type = type(solver.linear_solver_type).ITERATIVE_SCHUR
        solver.preconditioner_type = type(solver.preconditioner_type).SCHUR_JACOBI
    opts.ceres.solver_options.max_num_iterations = max_iterations
    opts.ceres.solver_options.function_tolerance = function_tolerance
    return opts


def run_ba(rec: pycolmap.Reconstruction, options) -> None:
    """Bundle adjustment of all registered images with the gauge fixed by two cameras."""
    config = pycolmap.BundleAdjustmentConfig()
    for iid, im in rec.images.items():
        if im.has_pose:
            config.add_image(iid)
    config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
    adjuster = pycolmap.create_default_bundle_adjuster(options, config, rec)
    summary = adjuster.solve()
    if options.print_summary:
        print(summary)


def observation_table(rec: pycolmap.Reconstruction) -> np.ndarray:
    """Every observation of a 3D point: rows of (image id, point2D index, point3D id, x, y)."""
    rows, xy = [], []
    points2d = {}
    for pid, point in rec.points3D.items():
        for el in point.track.elements:
            kps = points2d.get(el.image_id)
            if kps is None:
                kps = points2d[el.image_id] = rec.images[el.image_id].points2D
            rows.append((el.image_id, el.point2D_idx, pid))
            xy.append(kps[el.point2D_idx].xy)
    if not rows:
        return np.zeros((0, 5))
    return np.hstack([np.array(rows, np.float64), np.array(xy, np.float64)])


def reprojection_errors(rec: pycolmap.Reconstruction, table: np.ndarray) -> np.ndarray:
    """Reprojection error (px) of each row of :func:`observation_table` under the model's
    current poses, points and intrinsics (``inf`` behind the camera or for a missing point)."""
    err = np.full(len(table), np.inf)
    if not len(table):
        return err
    camera = next(iter(rec.cameras.values()))
    f, cx, cy, k1, k2 = (list(camera.params) + [0.0, 0.0])[:5]
    img_ids = table[:, 0].astype(np.int64)
    pids = table[:, 2].astype(np.int64)
    uniq, inv = np.unique(pids, return_inverse=True)
    xyz = np.full((len(uniq), 3), np.nan)
    for k, pid in enumerate(uniq.tolist()):
        if rec.exists_point3D(pid):
            xyz[k] = rec.points3D[pid].xyz
    xyz = xyz[inv]
    for iid in np.unique(img_ids).tolist():
        im = rec.images[iid]
        if not im.has_pose:
            continue
        sel = img_ids == iid
        m = im.cam_from_world().matrix()
        x = xyz[sel] @ m[:, :3].T + m[:, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = x[:, 0] / x[:, 2], x[:, 1] / x[:, 2]
            r2 = u * u + v * v
            d = 1.0 + k1 * r2 + k2 * r2 * r2
            proj = np.stack([f * u * d + cx, f * v * d + cy], 1)
            e = np.linalg.norm(proj - table[sel, 3:5], axis=1)
        e[~(x[:, 2] > 0)] = np.inf
        err[sel] = e
    return err


def observation_errors(rec: pycolmap.Reconstruction):
    """Per observation: (image id, point2D index, point3D id, reprojection error px)."""
    table = observation_table(rec)
    return np.column_stack([table[:, :3], reprojection_errors(rec, table)])


def set_distortion(rec: pycolmap.Reconstruction, k1: float, k2: float) -> None:
    for cam in rec.cameras.values():
        p = list(cam.params)
        p[3], p[4] = k1, k2
        cam.params = p


def distortion_is_significant(rec: pycolmap.Reconstruction, fixed_focal: bool, threads: int = -1,
                              min_gain: float = 0.05, px_scale: float = 1.0) -> bool:
    """True when estimating k1, k2 lowers the keyframe model's median reprojection error by
    more than ``min_gain`` (relative) compared with a distortion-free camera (the median, as
    the few gross outliers left at this stage would swamp a mean)."""
    free = pycolmap.Reconstruction(rec)
    none = pycolmap.Reconstruction(rec)
    set_distortion(none, 0.0, 0.0)
    run_ba(free, _ba_options(fixed_focal, px_scale, threads, 30, 1e-6, refine_distortion=True))
    run_ba(none, _ba_options(fixed_focal, px_scale, threads, 30, 1e-6, refine_distortion=False))

    def median(r):
        e = observation_errors(r)[:, 3]
        e = e[np.isfinite(e)]
        return float(np.median(e)) if len(e) else 0.0

    return median(free) < (1.0 - min_gain) * median(none)


def adjust(rec: pycolmap.Reconstruction, fixed_focal: bool, threads: int = -1,
           max_error_px: float = 2.0, refine_distortion: bool = True, px_scale: float = 1.0,
           table: np.ndarray | None = None,
           pending: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """Robust BA, drop observations over ``max_error_px``, BA again.

    ``table`` lists every observation to adjust (rows of :func:`observation_table`; default:
    the model's own) and ``pending`` marks its rows not yet in the model: they join it after the
    robust round unless they reproject worse than ``max_error_px`` there. The robust round only
    has to expose the outliers (at most 10 iterations); the final round stops when an iteration
    lowers the cost by less than 1e-6 of it.

    ``px_scale`` (full-resolution pixels per solve pixel) scales the robust loss and the
    outlier threshold, which are meant in solve pixels. Returns counts for the solve's stats and
    the table of the observations left in the model.
    """
    max_error_px *= px_scale
    if not refine_distortion:
        set_distortion(rec, 0.0, 0.0)
    n = rec.num_reg_images()
    if table is None:
        table = observation_table(rec)
    if pending is None:
        pending = np.zeros(len(table), bool)
    run_ba(rec, _ba_options(fixed_focal, px_scale, threads, 10, 1e-6, refine_distortion, n))
    bad = reprojection_errors(rec, table) > max_error_px
    for iid, idx, pid in table[bad & ~pending, :3].astype(np.int64).tolist():
        if rec.exists_point3D(pid):
            if rec.points3D[pid].track.length() <= 2:
                rec.delete_point3D(pid)
            else:
                rec.delete_observation(iid, idx)
    table, pending = table[~bad], pending[~bad]
    if len(table):
        pids = table[:, 2].astype(np.int64)
        uniq, inv = np.unique(pids, return_inverse=True)
        alive = np.array([rec.exists_point3D(p) for p in uniq.tolist()], bool)[inv]
        for iid, idx, pid in table[alive & pending, :3].astype(np.int64).tolist():
            rec.add_observation(pid, pycolmap.TrackElement(iid, idx))
        table = table[alive]
    run_ba(rec, _ba_options(fixed_focal, None, threads, 50, 1e-6,
                            refine_distortion=refine_distortion, n_frames=n))
    return {"observations_removed": int(bad.sum()),
            "distortion_estimated": bool(refine_distortion)}, table


def frame_errors(rec: pycolmap.Reconstruction) -> dict[int, float]:
    """Mean reprojection error (px) per frame position."""
    rows = observation_errors(rec)
    out = {}
    for iid, im in rec.images.items():
        if not im.has_pose:
            continue
        e = rows[rows[:, 0] == iid, 3]
        e = e[np.isfinite(e)]
        out[position_of(im.name)] = float(e.mean()) if len(e) else float("nan")
    return out
