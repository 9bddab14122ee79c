"""A scene's world frame and files.

The ground is fitted to the lifted points (:func:`backend.pipelines.poses.ground.fit_ground_plane`,
the camera solve's own RANSAC) and the world turned so it is z = 0 with +Z up, +X along the
photo camera's right and the origin where its optical axis meets the ground
(:func:`backend.pipelines.poses.ground.world_from_solve`); the scale is the depth model's
(metres for a metric model). The folder then reads like a camera solve plus its
reconstruction: ``cameras.json`` (the generated views, Blender convention, their images in
``frames/``), ``points.ply`` and ``splats.ply``; beside them ``preview.mp4`` (the splats along
the dense trajectory, whose cameras are ``preview_path.json``), ``coarse_strip.png``,
``refine_strip.png`` and ``scene.json`` (what was done, notes and timings).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from shared_protocol import camera_file
from shared_protocol import scale as scale_record
from shared_protocol.conventions import c2w_blender_to_opencv, matrix_to_quaternion

from ..poses.ground import apply_world, fit_ground_plane, world_from_solve
from ..splats_io import Splats, rotate_splats

GROUND_SAMPLES = 20_000
SCENE_FILE = "scene.json"
FRAMES_DIR = "frames"


def ground_world(points: np.ndarray, c2w: np.ndarray, seed: int = 0):
    """``(s, R, o, plane)``: the similarity ``x_world = s R (x - o)`` (scale 1: the depth's
    units are kept) putting the ground fitted to ``points`` at z = 0."""
    pts = np.asarray(points, np.float64)
    if len(pts) > GROUND_SAMPLES:
        pts = pts[np.random.default_rng(seed).choice(len(pts), GROUND_SAMPLES, replace=False)]
    c2w_cv = c2w_blender_to_opencv(np.asarray(c2w, np.float64))
    plane = fit_ground_plane(pts, c2w_cv, seed=seed)
    s, r, o = world_from_solve(plane, c2w_cv[0], scale=1.0)
    return s, r, o, plane


def cameras_to_world(s: float, r: np.ndarray, o: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Blender cameras of the working frame in the world frame."""
    return apply_world(s, r, o, c2w_blender_to_opencv(np.asarray(c2w, np.float64)), np.zeros((0, 3)))[0]


def splats_to_world(s: float, r: np.ndarray, o: np.ndarray, splats: Splats) -> Splats:
    """Splats of the working frame in the world frame."""
    turned = rotate_splats(splats, r, matrix_to_quaternion(r))
    means = s * (turned.means.astype(np.float64) - r @ o)
    return Splats(means, turned.scales + np.float32(np.log(s)), turned.quats, turned.opacities,
                  turned.sh0, turned.shN)


def cameras_document(mats, focal: float, width: int, height: int, sources, fps: float, metric: bool,
                     stats: dict | None = None) -> dict:
    """The cameras.json of a scene (ground z = 0, the scale's record in ``stats``)."""
    st = dict(stats or {})
    if metric:
        st["scale"] = scale_record.make_info("metric_depth", 1.0, None, "depth model",
                                             "metres from the metric depth of the photo")
    return camera_file.make_document(width, height, fps, mats, focal, (width / 2, height / 2), sources=sources,
                                     ground_plane={"point": [0, 0, 0], "normal": [0, 0, 1]}, stats=st)


def thumbs(rows: list[list[np.ndarray]], width: int = 160, gap: int = 4) -> np.ndarray:
    """Rows of images as one picture (each image ``width`` px wide, ``gap`` px apart, white)."""
    import cv2

    def small(img):
        h, w = img.shape[:2]
        return cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)

    rows = [[small(i) for i in row] for row in rows if row]
    th = rows[0][0].shape[0]
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (th + gap) - gap, cols * (width + gap) - gap, 3), 255, np.uint8)
    for y, row in enumerate(rows):
        for x, img in enumerate(row):
            out[y * (th + gap):y * (th + gap) + th, x * (width + gap):x * (width + gap) + width] = img
    return out


def write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
