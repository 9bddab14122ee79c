"""``poses --method learned``: cameras from a multi-view pointmap network, refined by the
project's own bundle adjustment where tracks exist.

1. The pointmap network runs over the clip in causal windows with keyframe memory and every
   frame is placed by PnP on its pointmap (:mod:`.learned_windows`).
2. The KLT tracks of the clip (tracked as for the default path) are triangulated with those
   cameras; tracks that reproject within ``max_error_px`` everywhere become points, and the
   frames seeing at least :data:`MIN_FRAME_POINTS` of them are refined in one bundle adjustment
   (:func:`bundle.adjust`, shared focal length, distortion when it helps). Frames the tracks
   do not reach keep their network pose, moved into the adjusted gauge.
3. Without usable tracks (footage the tracker cannot follow) the network's cameras are the
   result and the sparse points are samples of the pointmaps.

The ground plane, world frame, scale and outputs are the default path's (the caller's).
"""
from __future__ import annotations

import time
from contextlib import closing

import numpy as np
import pycolmap

from backend.progress import JobError

from . import bundle
from .learned_windows import choose_focal, frame_poses, run_windows
from .sfm import image_name

MIN_POINTS = 50
MIN_FRAME_POINTS = 15
MIN_ANGLE_DEG = 1.5
MAX_POINTMAP_POINTS = 20000


def load_model(opts):
    """The pose model: ``opts.pose_model`` (a stand-in) or the network under
    ``opts.weights_dir`` (default ``weights/``)."""
    if getattr(opts, "pose_model", None) is not None:
        return opts.pose_model
    from backend.models.pointmaps import PointmapNetwork

    return PointmapNetwork(getattr(opts, "weights_dir", None))


def solve_learned(path, tracks, opts, prog, stats, timings, px_scale, collect):
    """The learned solve of the frames ``tracks`` was made from; returns the same tuple as the
    default path (OpenCV c2w, registered, errors, [f, cx, cy, k1, k2], points, colours, track
    lengths). ``collect`` is the pipeline's collector of a bundle-adjusted model."""
    from backend.media.video import iter_frames

    n, width, height = len(tracks.sources), tracks.width, tracks.height
    model = load_model(opts)
    prog.stage("sfm", f"pointmaps of {n} frames in {model.window}-frame windows")
    t = time.perf_counter()
    frames = iter_frames(path, opts.start, opts.stop, opts.stride, opts.max_frames, opts.max_size)
    with closing(frames):
        result = run_windows(model, (rgb for _, _, rgb in frames), n, width, height, prog)
    if len(result.frames) != n:
        raise JobError(f"{path}: read {len(result.frames)} frames for the network, {n} for the "
                       "tracker", "bad_input")
    focal = choose_focal(result, width, height)
    if opts.focal_px:
        focal = float(opts.focal_px)
    timings["sfm"] = time.perf_counter() - t

    prog.stage("register", "placing every frame on its pointmap")
    t = time.perf_counter()
    max_err = max(4.0 * px_scale, 0.01 * max(width, height))
    c2w, pnp_err = frame_poses(result, focal, width, height, max_err)
    if len(c2w) < max(3, 0.5 * n):
        raise JobError(f"learned pose model output is not a pointmap of the frames (PnP placed "
                       f"{len(c2w)} of {n} frames on them)", "bad_model_output")
    timings["register"] = time.perf_counter() - t
    stats.update({"method": "learned", "learned_windows": result.n_windows,
                  "learned_focal_px": round(focal, 3),
                  "learned_pnp_rms_px": round(float(np.median(list(pnp_err.values()))), 4)})

    prog.stage("bundle_adjust", "bundle adjustment of the learned cameras with the tracks")
    t = time.perf_counter()
    adjusted = None
    if len(tracks.frames) == n and sum(len(f.ids) for f in tracks.frames):
        adjusted = _adjust(tracks, c2w, focal, opts, px_scale, max_err)
    timings["bundle_adjust"] = time.perf_counter() - t
    stats["learned_bundle_adjusted"] = adjusted is not None
    if adjusted is None:
        return _pointmap_result(result, c2w, pnp_err, focal, n, width, height)
    rec, table, counts, extra = adjusted
    stats.update(counts)
    stats["learned_unadjusted_frames"] = sorted(extra)

    def colour(pos, idx):
        return tracks.frames[pos].rgb[idx]

    extra = {p: (m, pnp_err[p]) for p, m in extra.items()}
    return collect(rec, n, colour, table, None, extra)


def _pointmap_result(result, c2w, pnp_err, focal, n, width, height):
    """The network's cameras as they are; the sparse points are samples of the pointmaps."""
    from .interpolate import fill_unregistered

    registered = np.array([p in c2w for p in range(n)])
    errors = np.array([pnp_err.get(p, np.nan) for p in range(n)])
    per = max(1, MAX_POINTMAP_POINTS // max(1, len(c2w)))
    rng = np.random.default_rng(0)
    pts, rgb = [], []
    for p in sorted(c2w):
        fp = result.frames[p]
        take = rng.choice(len(fp.xyz), min(per, len(fp.xyz)), replace=False)
        pts.append(fp.xyz[take])
        rgb.append(fp.rgb[take])
    pts = np.concatenate(pts)
    params = [focal, width / 2.0, height / 2.0, 0.0, 0.0]
    return (fill_unregistered(c2w, n), registered, errors, params, pts,
            np.concatenate(rgb).astype(np.uint8), np.ones(len(pts), np.int32))


def _triangulate(obs_pos, obs_xn, w2c, centres, max_err_n):
    """DLT point of one track seen at normalised image coordinates ``obs_xn`` by frames
    ``obs_pos`` (world-to-camera ``w2c``); None when it reprojects worse than ``max_err_n``
    (normalised units), lies behind a camera or has less than MIN_ANGLE_DEG of parallax."""
    ps = w2c[obs_pos]
    a = np.concatenate([obs_xn[:, :1] * ps[:, 2] - ps[:, 0], obs_xn[:, 1:] * ps[:, 2] - ps[:, 1]])
    _, _, vt = np.linalg.svd(a)
    xh = vt[-1]
    if abs(xh[3]) < 1e-12:
        return None
    x = xh[:3] / xh[3]
    q = ps @ np.append(x, 1.0)
    if (q[:, 2] <= 0).any():
        return None
    if np.linalg.norm(q[:, :2] / q[:, 2:] - obs_xn, axis=1).max() > max_err_n:
        return None
    rays = x - centres[obs_pos]
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    if np.min(rays @ rays[0]) > np.cos(np.radians(MIN_ANGLE_DEG)):
        return None
    return x


def _adjust(tracks, c2w, focal, opts, px_scale, max_err):
    """Triangulate the tracks with the learned cameras and bundle-adjust; None when the tracks
    give too few points."""
    width, height = tracks.width, tracks.height
    n = len(tracks)
    w2c = np.zeros((n, 3, 4))
    centres = np.zeros((n, 3))
    for p, m in c2w.items():
        w2c[p] = np.linalg.inv(m)[:3]
        centres[p] = m[:3, 3]
    centre = np.array([width / 2.0, height / 2.0])
    ids, pos, idx = [], [], []
    for p in sorted(c2w):
        f = tracks.frames[p]
        ids.append(f.ids)
        pos.append(np.full(len(f.ids), p))
        idx.append(np.arange(len(f.ids)))
    if not ids:
        return None
    ids, pos, idx = np.concatenate(ids), np.concatenate(pos), np.concatenate(idx)
    order = np.lexsort((pos, ids))
    ids, pos, idx = ids[order], pos[order], idx[order]
    uniq, starts, counts = np.unique(ids, return_index=True, return_counts=True)
    points = []
    for a, c in zip(starts.tolist(), counts.tolist()):
        if c < 2:
            continue
        sel = slice(a, a + c)
        xy = np.array([tracks.frames[p].xy[i] for p, i in zip(pos[sel].tolist(), idx[sel].tolist())])
        x = _triangulate(pos[sel], (xy - centre) / focal, w2c, centres, max_err / focal)
        if x is not None:
            points.append((x, pos[sel], idx[sel]))
    per_frame = np.zeros(n, int)
    for _, ps, _ in points:
        per_frame[ps] += 1
    in_ba = [p for p in sorted(c2w) if per_frame[p] >= MIN_FRAME_POINTS]
    if len(points) < MIN_POINTS or len(in_ba) < 3:
        return None
    rec = pycolmap.Reconstruction()
    cam = pycolmap.Camera(model="RADIAL", width=int(width), height=int(height),
                          params=[focal, width / 2.0, height / 2.0, 0.0, 0.0], camera_id=1)
    rec.add_camera_with_trivial_rig(cam)
    for p in in_ba:
        w2c = np.linalg.inv(c2w[p])
        image = pycolmap.Image(name=image_name(p), keypoints=tracks.frames[p].xy.astype(np.float64),
                               camera_id=1, image_id=p + 1)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[:3, :3]), w2c[:3, 3]))
    keep = np.zeros(n, bool)
    keep[in_ba] = True
    for x, ps, ix in points:
        sel = keep[ps]
        if sel.sum() < 2:
            continue
        elems = [pycolmap.TrackElement(int(p) + 1, int(i)) for p, i in zip(ps[sel], ix[sel])]
        colour = tracks.frames[int(ps[sel][0])].rgb[int(ix[sel][0])]
        rec.add_point3D(x, pycolmap.Track(elems), np.asarray(colour, np.uint8))
    fixed = bool(opts.focal_px)
    distortion = bundle.distortion_is_significant(rec, fixed, opts.threads, px_scale=px_scale)
    if not distortion:
        bundle.set_distortion(rec, 0.0, 0.0)
    counts, table = bundle.adjust(rec, fixed_focal=fixed, threads=opts.threads,
                                  refine_distortion=distortion, px_scale=px_scale)
    extra = _into_adjusted_gauge(rec, c2w, in_ba)
    return rec, table, counts, extra


def _into_adjusted_gauge(rec, c2w, in_ba) -> dict[int, np.ndarray]:
    """Network poses of the frames left out of the adjustment, moved by the similarity that
    takes the adjusted frames' network cameras to their adjusted ones: the rotation from their
    orientations (camera centres along a nearly straight path would leave it undetermined),
    then scale and shift from their centres."""
    rest = [p for p in c2w if p not in set(in_ba)]
    if not rest:
        return {}
    after = {p: rec.images[p + 1].cam_from_world().inverse().matrix() for p in in_ba}
    m = sum(after[p][:3, :3] @ c2w[p][:3, :3].T for p in in_ba)
    u, _, vt = np.linalg.svd(m)
    r = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    a = np.array([after[p][:3, 3] for p in in_ba])
    b = np.array([c2w[p][:3, 3] for p in in_ba]) @ r.T
    a0, b0 = a - a.mean(0), b - b.mean(0)
    s = float(np.sum(a0 * b0) / max(np.sum(b0 * b0), 1e-300))
    t = a.mean(0) - s * b.mean(0)
    out = {}
    for p in rest:
        mat = np.eye(4)
        mat[:3, :3] = r @ c2w[p][:3, :3]
        mat[:3, 3] = s * r @ c2w[p][:3, 3] + t
        out[p] = mat
    return out
