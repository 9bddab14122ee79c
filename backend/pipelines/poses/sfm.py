"""Structure from motion on keyframes with pycolmap's incremental mapper.

Two front ends feed one COLMAP database: KLT tracks (each keyframe's keypoints are the tracks it
sees; a pair's matches are their shared tracks) or SIFT features matched by pycolmap (for photo
sets and for the plain-COLMAP baseline). Two-view geometry is verified by pycolmap and the
incremental mapper solves poses, shared intrinsics (COLMAP ``RADIAL``: f, cx, cy, k1, k2) and
points. All keypoints are in full-resolution pixels (pixel-corner origin).
"""
from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pycolmap

from backend.progress import JobError

from .tracking import Tracks


def quiet_colmap() -> None:
    """Keep pycolmap's per-step logging out of the job's output (errors still show)."""
    pycolmap.logging.minloglevel = 2


def make_camera(width: int, height: int, focal_px: float | None = None) -> pycolmap.Camera:
    """A RADIAL camera at the image centre; focal given (and then a prior) or 1.2 x max side."""
    f = float(focal_px) if focal_px else 1.2 * max(width, height)
    cam = pycolmap.Camera(model="RADIAL", width=int(width), height=int(height),
                          params=[f, width / 2.0, height / 2.0, 0.0, 0.0])
    cam.has_prior_focal_length = bool(focal_px)
    return cam


def image_name(position: int) -> str:
    """Database image name of a frame position (its index in solve order)."""
    return f"{position:06d}"


def position_of(name: str) -> int:
    return int(name)


def _mapper_options(num_keyframes: int, fixed_focal: bool, threads: int,
                    px_scale: float = 1.0) -> pycolmap.IncrementalPipelineOptions:
    """Mapper settings for video keyframes; pixel thresholds are COLMAP's defaults (meant for
    the solve resolution) times ``px_scale``, as keypoints are in full-resolution pixels."""
    opts = pycolmap.IncrementalPipelineOptions()
    opts.extract_colors = False
    opts.num_threads = threads
    opts.min_model_size = 3
    opts.multiple_models = True
    opts.ba_refine_focal_length = not fixed_focal
    opts.ba_refine_extra_params = True
    opts.ba_refine_principal_point = False
    opts.mapper.init_min_tri_angle = 4.0
    opts.mapper.init_min_num_inliers = 50
    opts.mapper.abs_pose_min_num_inliers = 20
    opts.triangulation.ignore_two_view_tracks = False
    opts.random_seed = 0
    m = opts.mapper
    m.init_max_error *= px_scale
    m.abs_pose_max_error *= px_scale
    m.filter_max_reproj_error *= px_scale
    opts.triangulation.merge_max_reproj_error *= px_scale
    opts.triangulation.complete_max_reproj_error *= px_scale
    return opts


def _best_model(models: dict) -> pycolmap.Reconstruction | None:
    best = None
    for rec in models.values():
        if best is None or rec.num_reg_images() > best.num_reg_images():
            best = rec
    return best


def _run_mapper(db_path: Path, work: Path, opts) -> pycolmap.Reconstruction | None:
    out = work / "models"
    out.mkdir(exist_ok=True)
    models = pycolmap.incremental_mapping(str(db_path), str(work), str(out), opts)
    return _best_model(models)


def solve_tracks(tracks: Tracks, keys: list[int], pairs: list[tuple[int, int]],
                 camera: pycolmap.Camera, threads: int = -1, scratch: Path | None = None,
                 px_scale: float = 1.0) -> pycolmap.Reconstruction | None:
    """Reconstruct the keyframes from shared KLT tracks. Image names are frame positions."""
    quiet_colmap()
    with tempfile.TemporaryDirectory(prefix="splatstage-sfm-", dir=scratch) as tmp:
        work = Path(tmp)
        db_path = work / "database.db"
        db = pycolmap.Database.open(str(db_path))
        cam_id = db.write_camera(camera)
        image_ids = {}
        for pos in keys:
            iid = db.write_image(pycolmap.Image(name=image_name(pos), camera_id=cam_id))
            image_ids[pos] = iid
            db.write_keypoints(iid, tracks.frames[pos].xy.astype(np.float32))
        tvg_opts = pycolmap.TwoViewGeometryOptions()
        tvg_opts.detect_watermark = False
        tvg_opts.ransac.max_error = 2.0 * px_scale
        tvg_opts.ransac.random_seed = 0

        def verify(pair):
            a, b = pair
            ia, ib = tracks.common(a, b)
            tvg = pycolmap.estimate_two_view_geometry(
                camera, tracks.frames[a].xy[ia], camera, tracks.frames[b].xy[ib],
                np.stack([np.arange(len(ia)), np.arange(len(ia))], 1).astype(np.uint32), tvg_opts)
            return ia, ib, tvg

        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            verified = list(pool.map(verify, pairs))
        for (a, b), (ia, ib, tvg) in zip(pairs, verified):
            db.write_matches(image_ids[a], image_ids[b], np.stack([ia, ib], 1).astype(np.uint32))
            if tvg.config in (pycolmap.TwoViewGeometryConfiguration.DEGENERATE,
                              pycolmap.TwoViewGeometryConfiguration.UNDEFINED):
                continue
            inl = np.asarray(tvg.inlier_matches, np.int64)
            tvg.inlier_matches = np.stack([ia[inl[:, 0]], ib[inl[:, 1]]], 1).astype(np.uint32)
            db.write_two_view_geometry(image_ids[a], image_ids[b], tvg)
        db.close()
        opts = _mapper_options(len(keys), camera.has_prior_focal_length, threads, px_scale)
        # The keyframe model only seeds the all-frame adjustment: one global refinement, and
        # local and global adjustments stop at a relative cost change of 1e-6.
        opts.ba_global_max_refinements = 1
        opts.ba_global_function_tolerance = 1e-6
        opts.ba_local_function_tolerance = 1e-6
        return _run_mapper(db_path, work, opts)


def solve_sift(frames, full_size: tuple[int, int], camera: pycolmap.Camera, sequential: bool,
               overlap: int = 10, threads: int = -1, max_features: int = 8192,
               scratch: Path | None = None, on_frame=None, px_scale: float = 1.0):
    """Reconstruct from SIFT features of ``frames`` (an iterable of ``(position, rgb)`` at any
    size, consumed one at a time) matched by pycolmap.

    Keypoints are rescaled to ``full_size`` pixels. Matching is sequential (``overlap``
    neighbours) for video or exhaustive for photo sets. Returns the best model and, per frame
    position, the colours seen at its keypoints.
    """
    import cv2

    quiet_colmap()
    fw, fh = full_size
    ext = pycolmap.FeatureExtractionOptions()
    ext.num_threads = threads
    ext.sift.max_num_features = max_features
    extractor = pycolmap.FeatureExtractor.create(ext, pycolmap.Device.cpu)
    colours: dict[int, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="splatstage-sfm-", dir=scratch) as tmp:
        work = Path(tmp)
        db_path = work / "database.db"
        db = pycolmap.Database.open(str(db_path))
        cam_id = db.write_camera(camera)
        for pos, rgb in frames:
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            kps, desc = extractor.extract_from_uint8_array(np.ascontiguousarray(gray))
            if on_frame is not None:
                on_frame(pos)
            if len(kps) == 0:
                continue
            kp = np.asarray(pycolmap.keypoints_to_matrix(kps), np.float64)[:, :2].copy()
            xi = np.clip(kp[:, 0].astype(np.int64), 0, gray.shape[1] - 1)
            yi = np.clip(kp[:, 1].astype(np.int64), 0, gray.shape[0] - 1)
            colours[pos] = rgb[yi, xi].copy()
            kp[:, 0] *= fw / gray.shape[1]
            kp[:, 1] *= fh / gray.shape[0]
            iid = db.write_image(pycolmap.Image(name=image_name(pos), camera_id=cam_id))
            db.write_keypoints(iid, kp.astype(np.float32))
            db.write_descriptors(iid, desc)
        db.close()
        match = pycolmap.FeatureMatchingOptions()
        match.num_threads = threads
        if sequential:
            pairing = pycolmap.SequentialPairingOptions()
            pairing.overlap = overlap
            pycolmap.match_sequential(str(db_path), match, pairing, device=pycolmap.Device.cpu)
        else:
            pycolmap.match_exhaustive(str(db_path), match, device=pycolmap.Device.cpu)
        opts = _mapper_options(len(colours), camera.has_prior_focal_length, threads, px_scale)
        opts.mapper.init_min_tri_angle = 8.0
        opts.triangulation.ignore_two_view_tracks = True
        return _run_mapper(db_path, work, opts), colours


def require_model(rec: pycolmap.Reconstruction | None, input_name: str, minimum: int = 2):
    """The mapper's model, or a JobError naming the input when nothing could be solved."""
    if rec is None or rec.num_reg_images() < minimum:
        raise JobError(f"camera solve failed: no consistent 3D structure found in {input_name} "
                       "(too little texture or camera motion)", code="solve_failed")
    return rec
