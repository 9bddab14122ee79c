"""The camera solve from a video or an image folder to a :class:`PoseSolution`.

Stages (reported through ``progress``): decode, track, keyframes, sfm, register,
bundle_adjust, ground_plane. Frames are tracked with KLT and the keyframes solved with
pycolmap; every frame is then registered by PnP and all are refined in one bundle adjustment.
When tracks do not connect consecutive frames (a photo set with wide baselines) the solve
switches to SIFT features matched by pycolmap (exhaustively for image folders, sequentially for
video). Pure rotation (a tripod pan) is detected and solved rotation-only.
"""
from __future__ import annotations

import dataclasses
import os
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.media.video import iter_frames, probe, scaled_size
from backend.progress import JobError, Progress
from backend.threads import single_threaded_blas
from shared_protocol import scale as scale_record

from . import bundle, ground, keyframes, register, rotation, sfm
from .interpolate import fill_unregistered, interpolated_stats
from .solution import PoseSolution
from .stages import STAGES  # noqa: F401  (re-exported)
from .tracking import KLTTracker



@dataclass
class SolveOptions:
    """Knobs of the solve.

    A focal length in mm converts to pixels as ``focal_mm / sensor_width_mm * max(width,
    height)`` (the sensor width spans the image's longer side, as Blender's automatic sensor fit
    has it). ``scale_ids`` is ``("camera"|"point", a, b)``: two frame positions or two point
    indices (rows of points.ply) whose distance must equal ``scale_distance``.

    ``max_size`` is the longest side frames are tracked at (larger inputs are downscaled). The
    default keeps a 1080p clip at its own resolution: track positions are then measured on the
    original pixels, which lowers the trajectory error about twofold compared with tracking at
    1280, for about the same CPU time (no resampling, and KLT's cost grows with the number of
    tracks rather than with the pixels); 4K input is halved.

    ``ba_observations`` caps the observations of one point in the final adjustment (every k-th
    frame of a longer track; ``None``, the default, keeps every one). Its robust first round
    always works on at most 40 per point (:data:`bundle.ROBUST_OBS_PER_POINT`). A cap makes the
    final round faster (1.5 s against 5 s for 300 frames at 1080p on 16 cores) and the
    trajectory error about 2x larger, as tracked positions are correlated over neighbouring
    frames.
    ``anchor_frames`` is the tracker's anchor renewal period (default: the tracker's).
    """

    start: int = 0
    stop: int | None = None
    stride: int = 1
    max_frames: int | None = None
    max_size: int | None = 1920
    focal_px: float | None = None
    focal_mm: float | None = None
    sensor_width_mm: float | None = None
    scale_distance: float | None = None
    scale_ids: tuple[str, int, int] | None = None
    camera_height: float | None = None  # None: the default guess (scale.DEFAULT_CAMERA_HEIGHT)
    matcher: str = "auto"
    max_corners: int = 1500
    keyframe_motion: float = 0.05
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    rotation_check: bool = True
    retrack: bool = True  # re-track frames the tracker lost (motion blur) from their neighbours
    ba_observations: int | None = None
    anchor_frames: int | None = None
    # "tracks" (KLT/SfM, the default) or "learned" (a pointmap network, see learned.py); the
    # network loads from weights_dir (default weights/) unless pose_model is given.
    method: str = "tracks"
    weights_dir: str | None = None
    pose_model: object | None = None


def solve(input_path: str | Path, options: SolveOptions | None = None,
          progress: Progress | None = None) -> PoseSolution:
    """Solve the cameras of ``input_path`` (video file or image folder).

    NumPy's BLAS runs on one thread meanwhile (:mod:`backend.threads`: the solve's NumPy work
    is many small calls, which a thread pool slows by an order of magnitude on a busy machine).
    """
    with single_threaded_blas():
        return _solve(input_path, options, progress)


def _solve(input_path, options, progress) -> PoseSolution:
    opts = options or SolveOptions()
    prog = progress or Progress()
    path = Path(input_path)
    name = str(path)
    t0 = time.perf_counter()
    timings = {}

    prog.stage("decode", f"probing {path.name}")
    info = probe(path, count=False)
    if opts.focal_mm and not opts.focal_px:
        if not opts.sensor_width_mm:
            raise JobError("focal_mm needs sensor_width_mm", code="bad_params")
        opts = dataclasses.replace(
            opts, focal_px=opts.focal_mm / opts.sensor_width_mm * max(info.width, info.height))
    matcher = "klt" if opts.matcher == "auto" else opts.matcher
    if matcher not in ("klt", "sift"):
        raise JobError(f"unknown matcher {matcher!r} (use klt or sift)", code="bad_params")
    sw, sh = scaled_size(info.width, info.height, opts.max_size)
    expected = max(1, len(range(opts.start, opts.stop or info.frame_count, opts.stride)))
    if opts.max_frames:
        expected = min(expected, opts.max_frames)
    timings["decode"] = time.perf_counter() - t0

    prog.stage("track", f"tracking {expected} frames at {sw}x{sh}")
    t = time.perf_counter()
    tracks, sources = _decode(path, opts, matcher, info, (sw, sh), expected, prog)
    n_frames = len(sources)
    if n_frames < 3:
        raise JobError(f"{name}: only {n_frames} usable frame(s); a camera solve needs at least 3",
                       code="too_few_frames")
    if max(tracks.texture) < 2.0:
        raise JobError(f"{name}: blank frames (no image texture to track)", code="featureless")
    if matcher == "klt" and opts.method != "learned":
        counts = np.array([len(f.ids) for f in tracks.frames])
        if np.percentile(counts, 90) < 30:
            raise JobError(f"{name}: featureless video (at most {int(counts.max())} trackable "
                           "corners per frame)", code="featureless")
        if opts.matcher == "auto" and _tracking_broken(tracks):
            matcher = "sift"
            prog.stage("track", "tracks do not connect the frames: switching to SIFT matching")
    timings["track"] = time.perf_counter() - t

    px_scale = info.width / sw
    stats: dict = {"n_frames": n_frames, "solve_size": [sw, sh], "matcher": matcher,
                   "input": name, "rotation_only": False}
    if opts.method == "learned":
        from .learned import solve_learned

        result = solve_learned(path, tracks, opts, prog, stats, timings, px_scale, _collect)
    elif matcher == "klt":
        result = _solve_tracks(tracks, opts, prog, stats, timings, px_scale, name,
                               load_gray=_gray_loader(path, opts, tracks))
    else:
        result = _solve_sift(path, n_frames, info, opts, prog, stats, timings, px_scale, name)
    c2w_cv, registered, errors, camera_params, points, rgb, lengths = result

    prog.stage("ground_plane", "fitting the ground plane")
    t = time.perf_counter()
    sol = _to_world(info, sources, c2w_cv, registered, errors, camera_params, points, rgb, lengths,
                    opts, stats)
    timings["ground_plane"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    stats["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    stats["total_s"] = round(total, 3)
    stats["frames_per_second"] = round(n_frames / total, 3) if total > 0 else None
    sol.stats = stats
    return sol


# Frames decoded ahead of the tracker: 8 image decoders outpace any tracker, and 16 frames
# ahead bound the memory (a 4K RGB frame is 25 MB).
MAX_DECODE_THREADS = 8


def _decode_threads(opts: SolveOptions) -> int:
    return max(1, min(opts.threads, MAX_DECODE_THREADS))


def _decode(path, opts, matcher, info, size, expected, prog):
    """Stream the frames once: KLT tracks (for SIFT only the frames' identities and texture)."""
    sw, sh = size
    tracker = KLTTracker((info.width, info.height), (sw, sh), max_corners=opts.max_corners,
                         anchor_frames=opts.anchor_frames)
    sources: list[str] = []
    frames = iter_frames(path, opts.start, opts.stop, opts.stride, opts.max_frames, opts.max_size,
                         threads=_decode_threads(opts))
    with closing(frames):
        for n, (index, source, rgb) in enumerate(frames):
            if rgb.shape[1] != sw or rgb.shape[0] != sh:
                raise JobError(f"frame {source} of {path} has size {rgb.shape[1]}x{rgb.shape[0]}, "
                               f"expected {sw}x{sh} (all images must share one size)",
                               code="bad_input")
            if matcher == "klt":
                tracker.add(rgb, index, source)
            else:
                tracker.tracks.sources.append(source)
                tracker.tracks.indices.append(index)
                tracker.tracks.texture.append(float(rgb.std()))
            sources.append(source)
            prog.update((n + 1) / expected, f"frame {n + 1}/{expected}")
    return tracker.tracks, sources


def _tracking_broken(tracks, min_survival: float = 0.5) -> bool:
    """True when consecutive frames share too few tracks for the KLT front end (photo sets)."""
    survival = []
    for a in range(len(tracks) - 1):
        na = len(tracks.frames[a].ids)
        if na:
            survival.append(len(tracks.common(a, a + 1)[0]) / na)
    return not survival or float(np.median(survival)) < min_survival


def _gray_loader(path, opts, tracks):
    """``load(positions) -> {position: grey frame at the solve size}``, decoding the input again
    over the span of the positions asked for (used to re-track the frames the tracker lost)."""
    import cv2

    def load(positions):
        want = {tracks.indices[p]: p for p in positions}
        out = {}
        frames = iter_frames(path, min(want), max(want) + 1, opts.stride, None, opts.max_size)
        with closing(frames):
            for index, _, rgb in frames:
                if index in want:
                    out[want[index]] = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return out

    return load


def _solve_tracks(tracks, opts, prog, stats, timings, px_scale, name, load_gray=None):
    n = len(tracks)
    prog.stage("keyframes", "choosing keyframes")
    t = time.perf_counter()
    keys = keyframes.select_keyframes(tracks, motion_frac=opts.keyframe_motion)
    stats["n_keyframes"] = len(keys)
    timings["keyframes"] = time.perf_counter() - t

    if opts.rotation_check:
        t = time.perf_counter()
        model = rotation.detect_pure_rotation(tracks, keys, opts.focal_px, 0.5 * px_scale, stats)
        timings["rotation_check"] = time.perf_counter() - t
        if model is not None:
            return _finish_rotation(tracks, model, keys, prog, stats, timings, px_scale)

    prog.stage("sfm", f"solving {len(keys)} keyframes")
    t = time.perf_counter()
    pairs = keyframes.keyframe_pairs(tracks, keys)
    camera = sfm.make_camera(tracks.width, tracks.height, opts.focal_px)
    rec = sfm.require_model(sfm.solve_tracks(tracks, keys, pairs, camera, opts.threads,
                                             px_scale=px_scale), name)
    stats["n_keyframes_registered"] = rec.num_reg_images()
    distortion = bundle.distortion_is_significant(rec, camera.has_prior_focal_length, opts.threads,
                                                  px_scale=px_scale)
    if not distortion:
        bundle.set_distortion(rec, 0.0, 0.0)
    timings["sfm"] = time.perf_counter() - t

    prog.stage("register", "registering all frames")
    t = time.perf_counter()
    t2p = register.track_points(rec, tracks)
    poses = register.registered_poses(rec)
    todo = [p for p in range(n) if p not in poses]
    poses.update(register.register_frames(rec, tracks, t2p, todo, max_error_px=4.0 * px_scale,
                                          progress=prog, threads=max(1, opts.threads)))
    timings["register"] = time.perf_counter() - t

    prog.stage("bundle_adjust", f"bundle adjustment over {len(poses)} frames")
    t = time.perf_counter()
    model = bundle.build_model(rec, tracks, poses, t2p,
                               max_obs_per_point=opts.ba_observations or None)
    counts, table = bundle.adjust(model.rec, fixed_focal=camera.has_prior_focal_length,
                                  threads=opts.threads, refine_distortion=distortion,
                                  px_scale=px_scale, table=model.table, pending=model.pending)
    stats.update(counts)
    timings["bundle_adjust"] = time.perf_counter() - t

    extra = {}
    lost = [p for p in range(n) if p not in poses]
    if lost and load_gray is not None and opts.retrack:
        prog.stage("bundle_adjust", f"re-tracking {len(lost)} frame(s) the tracker lost")
        t = time.perf_counter()
        sw, sh = stats["solve_size"]
        sx, sy = tracks.width / sw, tracks.height / sh
        got = register.register_by_retracking(model.rec, lost, load_gray, (sx, sy),
                                              max_error_px=4.0 * px_scale)
        extra = {p: (np.vstack([pose.inverse().matrix(), [0, 0, 0, 1]]), err)
                 for p, (pose, err) in got.items()}
        timings["retrack"] = time.perf_counter() - t
    stats["retracked_frames"] = sorted(extra)

    def colour(pos, idx):
        return tracks.frames[pos].rgb[idx]

    return _collect(model.rec, n, colour, table, model.frames_seen, extra)


def _solve_sift(path, n, info, opts, prog, stats, timings, px_scale, name):
    prog.stage("sfm", f"SIFT structure from motion on {n} images")
    t = time.perf_counter()
    camera = sfm.make_camera(info.width, info.height, opts.focal_px)
    reader = iter_frames(path, opts.start, opts.stop, opts.stride, opts.max_frames, opts.max_size,
                         threads=_decode_threads(opts))
    with closing(reader):
        frames = ((pos, rgb) for pos, (_, _, rgb) in enumerate(reader))
        rec, colours = sfm.solve_sift(frames, (info.width, info.height), camera,
                                      sequential=not info.is_image_folder, threads=opts.threads,
                                      on_frame=lambda pos: prog.update(0.5 * (pos + 1) / n),
                                      px_scale=px_scale)
    rec = sfm.require_model(rec, name)
    stats["n_keyframes"] = n
    distortion = bundle.distortion_is_significant(rec, camera.has_prior_focal_length, opts.threads,
                                                  px_scale=px_scale)
    timings["sfm"] = time.perf_counter() - t
    prog.stage("register", "registered by the mapper")
    prog.stage("bundle_adjust", f"bundle adjustment over {rec.num_reg_images()} images")
    t = time.perf_counter()
    counts, table = bundle.adjust(rec, fixed_focal=camera.has_prior_focal_length,
                                  threads=opts.threads, refine_distortion=distortion,
                                  px_scale=px_scale)
    stats.update(counts)
    timings["bundle_adjust"] = time.perf_counter() - t

    def colour(pos, idx):
        return colours[pos][idx]

    return _collect(rec, n, colour, table)


def _collect(rec, n, colour, table, frames_seen=None, extra=None):
    """Arrays from a bundle-adjusted model: OpenCV c2w per position, intrinsics, points (track
    length = number of frames that saw the point: ``frames_seen`` or the model's track).
    ``table`` lists the model's observations (rows of ``bundle.observation_table``);
    ``colour(position, point2D_indices)`` gives the colours seen at those keypoints."""
    camera = next(iter(rec.cameras.values()))
    params = list(camera.params) + [0.0, 0.0]
    c2w = {}
    for im in rec.images.values():
        if im.has_pose:
            c2w[sfm.position_of(im.name)] = np.vstack([im.cam_from_world().inverse().matrix(),
                                                       [0, 0, 0, 1]])
    errs = bundle.reprojection_errors(rec, table)
    img_ids = table[:, 0].astype(np.int64)
    pids = table[:, 2].astype(np.int64)
    errors = np.full(n, np.nan)
    point_ids = np.array(list(rec.points3D.keys()), np.int64)
    rgb_sum = np.zeros((len(point_ids), 3))
    order = np.argsort(point_ids) if len(point_ids) else point_ids
    row_point = order[np.searchsorted(point_ids[order], pids)] if len(point_ids) else pids
    for iid in np.unique(img_ids).tolist():
        im = rec.images[iid]
        sel = img_ids == iid
        pos = sfm.position_of(im.name)
        if im.has_pose:
            e = errs[sel]
            e = e[np.isfinite(e)]
            errors[pos] = float(e.mean()) if len(e) else np.nan
        np.add.at(rgb_sum, row_point[sel], colour(pos, table[sel, 1].astype(np.int64)))
    counts = np.bincount(row_point, minlength=len(point_ids))[:, None] if len(pids) else \
        np.zeros((len(point_ids), 1))
    rgb = np.where(counts > 0, rgb_sum / np.maximum(counts, 1), 128.0)
    pts = np.array([rec.points3D[pid].xyz for pid in point_ids.tolist()]).reshape(-1, 3)
    lengths = [frames_seen.get(pid, rec.points3D[pid].track.length()) if frames_seen
               else rec.points3D[pid].track.length() for pid in point_ids.tolist()]
    for pos, (m, err) in (extra or {}).items():  # frames registered after the adjustment
        c2w[pos] = m
        errors[pos] = err
    registered = np.array([p in c2w for p in range(n)])
    errors[~registered] = np.nan
    mats = fill_unregistered(c2w, n)
    return (mats, registered, errors, params[:5], pts, rgb.round().astype(np.uint8),
            np.array(lengths, np.int32))


def _register_rotation_all(tracks, model, prog, px_scale):
    n = len(tracks)
    rots, errors = {}, np.full(n, np.nan)
    for p in range(n):
        got = rotation.register_rotation(tracks, model, p, max_error_px=3.0 * px_scale)
        if got is not None:
            rots[p], errors[p] = got
        elif p in model.rotations and len(tracks.frames[p].ids) >= 30:
            rots[p] = model.rotations[p]
        if p % 10 == 0:
            prog.update(p / n)
    return rots, errors


def _finish_rotation(tracks, model, keys, prog, stats, timings, px_scale):
    n = len(tracks)
    stats["rotation_only"] = True
    stats["n_keyframes_registered"] = len(model.rotations)
    stats["rotation_fit_rms_px"] = round(model.rms_px, 4)
    prog.stage("sfm", "rotation-only solve (pure rotation detected)")
    prog.stage("register", "registering all frames (rotation only)")
    t = time.perf_counter()
    rots, errors = _register_rotation_all(tracks, model, prog, px_scale)
    timings["register"] = time.perf_counter() - t
    prog.stage("bundle_adjust", "rotation-only adjustment done jointly over the keyframes")
    c2w = {}
    for p, r in rots.items():
        m = np.eye(4)
        m[:3, :3] = r.T
        c2w[p] = m
    registered = np.array([p in c2w for p in range(n)])
    mats = fill_unregistered(c2w, n)
    ids = sorted(model.directions)
    lengths_all = tracks.track_lengths()
    colours = _track_colours(tracks)
    pts = np.array([model.directions[i] for i in ids]).reshape(-1, 3)
    rgb = np.array([colours[i] for i in ids]).reshape(-1, 3).astype(np.uint8)
    lengths = np.array([lengths_all[i] for i in ids], np.int32)
    params = [model.focal, tracks.width / 2.0, tracks.height / 2.0, model.k1, 0.0]
    return mats, registered, errors, params, pts, rgb, lengths


def _track_colours(tracks) -> dict[int, np.ndarray]:
    ids = np.concatenate([f.ids for f in tracks.frames])
    rgb = np.concatenate([f.rgb for f in tracks.frames]).astype(np.float64)
    uniq, inv = np.unique(ids, return_inverse=True)
    sums = np.zeros((len(uniq), 3))
    np.add.at(sums, inv, rgb)
    counts = np.bincount(inv, minlength=len(uniq))[:, None]
    return dict(zip(uniq.tolist(), (sums / counts).round()))


POINTS_AT_INFINITY_RADIUS = 1000.0


def _height(opts: SolveOptions) -> float:
    return opts.camera_height or scale_record.DEFAULT_CAMERA_HEIGHT


def _height_scale(opts: SolveOptions) -> dict:
    if opts.camera_height is None:
        return scale_record.default_info()
    return scale_record.make_info("camera_height", opts.camera_height, None, "camera",
                                  f"the first camera {opts.camera_height:g} m above the ground")


def _to_world(info, sources, c2w_cv, registered, errors, params, points, rgb, lengths, opts, stats):
    f, cx, cy, k1, k2 = params
    if stats["rotation_only"]:
        up = ground.up_hint(c2w_cv)
        plane = ground.Plane(up, 1.0, 0, False)
        s, r, o = ground.world_from_solve(plane, c2w_cv[0], None, _height(opts))
        points = points * (POINTS_AT_INFINITY_RADIUS / s)
        stats["points_at_infinity_radius"] = POINTS_AT_INFINITY_RADIUS
        stats["scale"] = _height_scale(opts)
        if opts.scale_distance and opts.scale_ids:
            stats["scale"]["note"] += " (known distance ignored: a pure rotation has no baseline)"
        stats["ground_plane_found"] = False
    else:
        plane = ground.fit_ground_plane(points, c2w_cv[registered])
        stats["ground_plane_found"] = plane.found
        stats["ground_plane_inliers"] = plane.inliers
        scale = None
        if opts.scale_distance and opts.scale_ids:
            kind, a, b = opts.scale_ids
            src = c2w_cv[:, :3, 3] if kind == "camera" else points
            if not (0 <= a < len(src) and 0 <= b < len(src)) or a == b:
                raise JobError(f"scale reference {kind}s {a} and {b} are not two of the "
                               f"{len(src)} solved {kind}s", code="bad_params")
            dist = float(np.linalg.norm(src[a] - src[b]))
            if dist <= 1e-12:
                raise JobError(f"scale reference {kind}s {a} and {b} coincide", code="bad_params")
            scale = opts.scale_distance / dist
            stats["scale"] = scale_record.make_info("known_distance", opts.scale_distance, None, f"{kind}s",
                                                    f"{opts.scale_distance:g} m between two {kind}s")
        else:
            stats["scale"] = _height_scale(opts)
        s, r, o = ground.world_from_solve(plane, c2w_cv[0], scale, _height(opts))
    stats["scale_source"] = stats["scale"]["source"]
    if stats["scale"]["reference"] in ("cameras", "points"):
        stats["scale_source"] = f"known_distance_{stats['scale']['reference']}"
    mats, pts = ground.apply_world(s, r, o, c2w_cv, points)
    n_reg = int(registered.sum())
    stats.update({
        "n_registered": n_reg, "n_unregistered": int(len(registered) - n_reg),
        "fraction_registered": round(n_reg / len(registered), 6),
        "n_points": int(len(pts)),
        "mean_reproj_error_px": float(np.nanmean(errors)) if np.isfinite(errors).any() else None,
        "focal_px": float(f), "k1": float(k1), "k2": float(k2),
        "world_scale": float(s),
    })
    stats.update(interpolated_stats(registered))
    return PoseSolution(
        width=info.width, height=info.height, fps=info.fps, sources=list(sources),
        matrix_world=mats, focal_px=float(f), principal_point_px=(float(cx), float(cy)),
        k1=float(k1), k2=float(k2), registered=registered, reproj_error_px=errors,
        points_xyz=pts, points_rgb=rgb, track_length=lengths,
        ground_plane={"point": [0.0, 0.0, 0.0], "normal": [0.0, 0.0, 1.0]}, stats=stats)
