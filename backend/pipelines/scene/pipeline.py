"""A scene from one photo (or 2-8 photos of one place): coarse warp-and-inpaint, refine,
outputs. See :mod:`backend.pipelines.scene` for the stages and docs/scene.md."""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from backend.progress import JobError, Progress

from ..splats_io import write_ply
from . import coarse as coarse_mod
from .images import DEFAULT_MAX_SIZE, focal_px, read_photos
from .models import Timed, View
from .outputs import (FRAMES_DIR, SCENE_FILE, cameras_document, cameras_to_world, ground_world, splats_to_world,
                      thumbs, write_png)
from .refine import RefineOptions, refine_stage
from .trajectory import schedule, spiral, through

STRIP_WIDTH = 160  # px, each view in the strips


@dataclass
class SceneOptions:
    max_size: int | None = DEFAULT_MAX_SIZE  # longest side of the working images
    fov_deg: float | None = None  # horizontal field of view of the photo (default: EXIF, else 60)
    views: int = 8  # generated views along the trajectory (after the photo)
    radius: float = 0.08  # spiral radius, as a fraction of the photo's median depth
    forward: float = 0.15  # spiral's forward travel, as a fraction of the photo's median depth
    turns: float = 1.0
    coarse: coarse_mod.CoarseOptions = field(default_factory=coarse_mod.CoarseOptions)
    refine: RefineOptions = field(default_factory=RefineOptions)
    preview_frames: int = 48  # frames of preview.mp4 (0: none)
    fps: float = 24.0
    device: str = "cpu"

    def __post_init__(self):
        if isinstance(self.coarse, dict):
            self.coarse = coarse_mod.CoarseOptions(**self.coarse)
        if isinstance(self.refine, dict):
            self.refine = RefineOptions(**self.refine)
        self.coarse.device = self.refine.device = self.device


def _two_view(a: np.ndarray, b: np.ndarray, focal: float) -> tuple[np.ndarray, np.ndarray]:
    """Blender cameras (2, 4, 4) of two photos (the first at the origin, a unit baseline) and
    their triangulated points, from SIFT matches and the essential matrix with the known focal
    length (OpenCV); JobError ``solve_failed`` when they share too little."""
    import cv2

    from shared_protocol.conventions import c2w_opencv_to_blender, invert_pose

    sift = cv2.SIFT_create(4000)
    ka, da = sift.detectAndCompute(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), None)
    kb, db = sift.detectAndCompute(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), None)
    good = []
    if da is not None and db is not None and len(ka) >= 2 and len(kb) >= 2:
        for m in cv2.BFMatcher().knnMatch(da, db, k=2):
            if len(m) == 2 and m[0].distance < 0.75 * m[1].distance:
                good.append(m[0])
    if len(good) < 30:
        raise JobError(f"scene: the two photos share {len(good)} features, too few to place them together; "
                       "are they of one place?", "solve_failed")
    h, w = a.shape[:2]
    K = np.array([[focal, 0, w / 2 - 0.5], [0, focal, h / 2 - 0.5], [0, 0, 1.0]])  # OpenCV: centres at integers
    pa = np.float64([ka[m.queryIdx].pt for m in good])
    pb = np.float64([kb[m.trainIdx].pt for m in good])
    E, inl = cv2.findEssentialMat(pa, pb, K, cv2.RANSAC, 0.999, 1.0)
    if E is None or E.shape != (3, 3):
        raise JobError("scene: no relative pose fits the two photos; are they of one place?", "solve_failed")
    n, R, t, inl = cv2.recoverPose(E, pa, pb, K, mask=inl)
    if n < 20:
        raise JobError(f"scene: only {n} matches agree on the two photos' relative pose; are they of one place?",
                       "solve_failed")
    keep = inl.ravel() > 0
    P0 = K @ np.eye(3, 4)
    P1 = K @ np.hstack([R, t])
    X = cv2.triangulatePoints(P0, P1, pa[keep].T, pb[keep].T)
    pts = (X[:3] / X[3]).T
    w2c1 = np.eye(4)
    w2c1[:3, :3], w2c1[:3, 3] = R, t.ravel()
    mats = c2w_opencv_to_blender(np.array([np.eye(4), invert_pose(w2c1)]))
    return mats, pts[np.isfinite(pts).all(1) & (pts[:, 2] > 0)]


def _solve_photos(photos, focal: float, work: Path, progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    """Blender cameras and sparse points of several photos: two by their essential matrix
    (:func:`_two_view`), three or more by the project's camera solve on them as an image set;
    JobError ``solve_failed`` when they do not make one scene."""
    progress.stage("lift", f"placing {len(photos)} photos together")
    if len(photos) == 2:
        return _two_view(photos[0].rgb, photos[1].rgb, focal)
    from ..poses.pipeline import SolveOptions, solve

    folder = work / "photos"
    folder.mkdir(parents=True)
    for i, p in enumerate(photos):
        write_png(folder / f"{i:03d}.png", p.rgb)
    try:
        sol = solve(str(folder), SolveOptions(focal_px=focal, max_size=None, threads=1), progress)
    except JobError as exc:
        raise JobError(f"scene: the photos could not be solved together (are they of one place?): {exc.message}",
                       "solve_failed") from None
    registered = np.asarray(sol.registered, bool)
    if not registered.all():
        lost = ", ".join(photos[i].path.name for i in np.flatnonzero(~registered))
        raise JobError(f"scene: the camera solve could not place {lost}; are the photos of one place?",
                       "solve_failed")
    return np.asarray(sol.matrix_world, np.float64), np.asarray(sol.points_xyz, np.float64)


def _metric_ratio(points_work: np.ndarray, depth: np.ndarray, view: View) -> float:
    """Median of model depth over solve depth at the solve's points seen in the photo."""
    p = points_work @ np.asarray(view.c2w)[:3, :3] - np.asarray(view.c2w)[:3, 3] @ np.asarray(view.c2w)[:3, :3]
    z = -p[:, 2]
    ok = z > 1e-6
    u = p[ok, 0] / z[ok] * view.focal + view.width / 2
    v = -p[ok, 1] / z[ok] * view.focal + view.height / 2
    inside = (u >= 0) & (u < view.width) & (v >= 0) & (v < view.height)
    if inside.sum() < 8:
        raise JobError("scene: too few solved points in the first photo to scale the solve", "solve_failed")
    d = depth[v[inside].astype(int), u[inside].astype(int)]
    return float(np.median(d / z[ok][inside]))


def make_scene(images, out_dir: str | Path, models, opts: SceneOptions | None = None,
               progress: Progress | None = None) -> dict:
    """Build a scene from ``images`` (1-8 paths) into ``out_dir``; ``models`` has the members of
    :mod:`.models`. Returns the summary (also written to ``scene.json``)."""
    opts = opts or SceneOptions()
    progress = progress or Progress()
    out = Path(out_dir)
    t_all = time.perf_counter()
    times: dict[str, float] = {}
    progress.stage("load", "reading the photos")
    photos = read_photos(images, opts.max_size)
    notes = [n for p in photos for n in p.notes]
    rgb = photos[0].rgb
    h, w = rgb.shape[:2]
    focal, focal_from = focal_px(photos[0], opts.fov_deg, w, h)
    timed = Timed(models)
    out.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    result = coarse_mod.start(rgb, focal, timed, opts.coarse, progress)
    photo_depth = result.photo_depth
    target = float(np.median(photo_depth))
    t_gen, t_hold = schedule(opts.views)
    if len(photos) == 1:
        path = lambda tt: spiral(tt, opts.radius * target, opts.forward * target, target, opts.turns)  # noqa: E731
    else:
        with tempfile.TemporaryDirectory(prefix=".scene-solve-", dir=out) as tmp:
            mats, pts = _solve_photos(photos, focal, Path(tmp), progress)
        to_work = np.linalg.inv(mats[0])
        cams = to_work @ mats
        pts_work = pts @ to_work[:3, :3].T + to_work[:3, 3]
        bx = (photo_depth.shape[1] - w) // 2
        by = (photo_depth.shape[0] - h) // 2
        k = _metric_ratio(pts_work, photo_depth[by:by + h, bx:bx + w], View(np.eye(4), focal, w, h))
        cams[:, :3, 3] *= k
        for i, p in enumerate(photos[1:], start=1):
            coarse_mod.add_view(result, View(cams[i], focal, w, h), timed, opts.coarse, image=p.rgb)
        path = lambda tt: through(cams, tt)  # noqa: E731
        notes.append(f"{len(photos)} photos solved together; the solve scaled by {k:.4g} to the depth model's units")
    n_given = len(result.views)
    result = coarse_mod.walk(result, path(t_gen), timed, opts.coarse, progress)
    times["coarse"] = time.perf_counter() - t

    t = time.perf_counter()
    coarse_splats = result.splats
    splats, targets, refine_renders = refine_stage(result.splats, result.frames, result.views, timed, opts.refine,
                                                   progress)
    times["refine"] = time.perf_counter() - t

    t = time.perf_counter()
    progress.stage("write", "ground plane and outputs")
    c2w_work = np.array([v.c2w for v in result.views])
    s, r, o, plane = ground_world(coarse_splats.means, c2w_work)
    mats, world_splats = cameras_to_world(s, r, o, c2w_work), splats_to_world(s, r, o, splats)
    if not plane.found:
        notes.append("no ground plane found among the lifted points: the world's z = 0 is a level plane under them")
    frames_dir = out / FRAMES_DIR
    if frames_dir.exists():
        shutil.rmtree(frames_dir)
    frames_dir.mkdir()
    names = [f"{i:05d}.png" for i in range(len(targets))]
    for name, img in zip(names, targets):
        write_png(frames_dir / name, img)
    metric = timed.metric
    from shared_protocol import camera_file

    doc = cameras_document(mats, focal, w, h, names, opts.fps, metric,
                           stats={"input": FRAMES_DIR, "scene": True, "ground_plane_found": bool(plane.found)})
    camera_file.write(out / "cameras.json", doc)
    write_ply(world_splats, out / "splats.ply")
    from ..poses.points_ply import write_points

    keep = np.random.default_rng(0).permutation(len(world_splats))[:100_000]
    write_points(out / "points.ply", world_splats.means[keep], np.rint(world_splats.rgb()[keep] * 255),
                 np.ones(len(keep), np.int32))
    # the dense trajectory (photo to the last generated view) for the preview
    t_dense = np.linspace(0.0, 1.0, max(2, opts.preview_frames))
    dense_work = path(t_dense)
    if len(photos) == 1:
        dense_work[0] = np.eye(4)
    dense = cameras_to_world(s, r, o, dense_work)
    camera_file.write(out / "preview_path.json",
                      cameras_document(dense, focal, w, h, [f"{i:05d}" for i in range(len(dense))], opts.fps, metric,
                                       stats={"scene": True, "t": t_dense.tolist()}))
    t_render = time.perf_counter()
    if opts.preview_frames > 0:  # 0: no preview video
        _preview(world_splats, dense, focal, w, h, opts, out)
    n_strip = min(6, len(mats) - 1)
    write_png(out / "coarse_strip.png", thumbs([[a for a, _ in result.strip[:n_strip]],
                                                [b for _, b in result.strip[:n_strip]]], STRIP_WIDTH))
    if refine_renders:  # coarse view | its render after training | the denoised render
        rows = [result.frames[1:1 + n_strip], refine_renders[:n_strip], targets[1:1 + n_strip]]
    else:
        tw, th_ = STRIP_WIDTH, max(1, round(h * STRIP_WIDTH / w))
        rows = [result.frames[1:1 + n_strip], [
            np.clip(np.rint(coarse_mod.render(world_splats, View(m, focal * tw / w, tw, th_), opts.device)[0] * 255),
                    0, 255).astype(np.uint8) for m in mats[1:1 + n_strip]]]
    write_png(out / "refine_strip.png", thumbs(rows, STRIP_WIDTH))
    times["preview"] = time.perf_counter() - t_render
    times["write"] = time.perf_counter() - t
    total = time.perf_counter() - t_all
    summary = {
        "images": [str(p.path) for p in photos], "size": [w, h], "focal_px": round(focal, 4),
        "focal_from": focal_from, "depth_unit": result.depth_unit, "metric": metric,
        "far_depth": round(result.far, 6), "views": len(result.views), "photo_views": n_given,
        "trajectory": "spiral" if len(photos) == 1 else "through the solved photos",
        "t_views": (np.linspace(0.0, 1.0, n_given) if n_given > 1 else np.zeros(1)).tolist() + t_gen.tolist(),
        "t_held_out": t_hold.tolist(),
        "gaussians_coarse": len(coarse_splats), "gaussians": len(world_splats),
        "generated_fraction": [round(x, 5) for x in result.hole_fraction],
        "depth_alignment": [[round(a, 6), round(b, 6)] for a, b in result.alignment],
        "ground_plane_found": bool(plane.found), "camera_height": round(float(mats[0][2, 3]), 6),
        "world_from_working": {"scale": s, "rotation": r.tolist(), "origin": o.tolist()},
        "options": asdict(opts), "notes": notes,
        "seconds": {**{k: round(v, 3) for k, v in times.items()}, "models": round(timed.seconds, 3),
                    "total": round(total, 3)},
        "model_calls": timed.calls,
    }
    (out / SCENE_FILE).write_text(json.dumps(summary, indent=1))
    return summary


def _preview(splats, mats, focal: float, w: int, h: int, opts: SceneOptions, out: Path) -> None:
    from backend.media.encode import VideoWriter

    from ..render import cameras_from_arrays, render_views

    with VideoWriter(out / "preview.mp4", opts.fps, crf=20, preset="veryfast") as writer:
        for a in range(0, len(mats), 8):
            sub = cameras_from_arrays(mats[a:a + 8], focal, (w / 2, h / 2), w, h)
            rgb = render_views(splats, sub, device=opts.device, batch=8)["rgb"]
            for img in rgb:
                writer.write(np.clip(np.rint(img * 255), 0, 255).astype(np.uint8))
