"""Stand-ins for the learned models that return a synthetic scene's truth.

They have the members of the real models' interfaces (:mod:`.depth`, :mod:`.pointmaps`), so a
pipeline run with them checks everything but the learned model's quality: sampling, alignment,
chaining, the geometry that follows. The scene is the ray-cast one of
:mod:`backend.evaluation.raycast_scene` (metres, Blender cameras, principal point at the centre).
"""
from __future__ import annotations

import hashlib

import numpy as np

from backend.pipelines.poses.learned_windows import pixel_grid

#: OpenCV camera axes from Blender's (x right, y down, z forward vs y up, looking down -z).
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


def frame_key(rgb: np.ndarray) -> str:
    """Identity of a frame's pixels (for looking up which view a stand-in is given)."""
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()


class OracleDepth:
    """Metric depth (along the viewing axis) of the view it is given, times ``1 + noise * N(0,
    1)`` per pixel and optionally ``1 + frame_bias * U(-1, 1)`` per call. ``views`` maps
    :func:`frame_key` of each frame to its Blender camera-to-world matrix; ``focal`` is the
    focal length in pixels of frames ``width`` wide (a smaller frame gets it scaled)."""

    metric = True
    output = "depth"

    def __init__(self, scene, views: dict, focal: float, width: int, noise: float = 0.05,
                 frame_bias: float = 0.0, seed: int = 0):
        self.scene, self.views, self.focal, self.width = scene, views, focal, width
        self.noise, self.frame_bias = noise, frame_bias
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def __call__(self, rgb: np.ndarray, focal_px: float | None = None) -> np.ndarray:
        c2w = self.views[frame_key(rgb)]
        h, w = rgb.shape[:2]
        d = self.scene.depth(c2w, self.focal * w / self.width, w, h).astype(np.float64)
        d *= 1.0 + self.noise * self.rng.standard_normal(d.shape)
        d *= 1.0 + self.frame_bias * self.rng.uniform(-1.0, 1.0)
        self.calls += 1
        return d.astype(np.float32)


class OraclePointmaps:
    """True pointmaps of a clip's frames (identified by their positions) in the OpenCV camera
    of the window's first frame, times a scale that differs for every window (``scale(k)`` for
    the k-th call). Cameras ``c2w`` (Blender) see footage ``width`` x ``height`` with focal
    ``focal`` px."""

    def __init__(self, scene, c2w, focal: float, width: int, height: int,
                 input_size: tuple[int, int], window: int = 8, memory: int = 2, scale=None):
        self.scene, self.c2w = scene, np.asarray(c2w, np.float64)
        self.focal, self.width, self.height = focal, width, height
        self.input_size, self.window, self.memory = tuple(input_size), window, memory
        self.scale = scale or (lambda k: 0.3 + 0.45 * k)
        self.calls: list[list[int]] = []

    def world_points(self, pos: int) -> np.ndarray:
        """(h, w, 3) world points seen through the network grid's pixels of frame ``pos``."""
        h, w = self.input_size
        g = pixel_grid(h, w, self.width, self.height).reshape(-1, 2)
        d_cam = np.column_stack([(g[:, 0] - self.width / 2) / self.focal,
                                 -(g[:, 1] - self.height / 2) / self.focal, -np.ones(len(g))])
        m = self.c2w[pos]
        dirs = d_cam @ m[:3, :3].T
        origins = np.broadcast_to(m[:3, 3], dirs.shape)
        _, t = self.scene._trace(origins, dirs)
        return (origins + t[:, None] * dirs).reshape(h, w, 3)

    def __call__(self, frames, positions):
        self.calls.append([int(p) for p in positions])
        ref = self.c2w[positions[0]]
        s = self.scale(len(self.calls))
        pts = [s * (self.world_points(p) - ref[:3, 3]) @ ref[:3, :3] @ BLENDER_TO_OPENCV
               for p in positions]
        return np.array(pts, np.float32), np.ones((len(positions), *self.input_size), np.float32)


class OracleMultiview:
    """A multi-view model (:mod:`.multiview`) that hands back given renders of a known object
    at its views' fixed poses, whatever photo it is shown."""

    def __init__(self, views, rgba: np.ndarray):
        self.views, self.rgba = views, np.asarray(rgba)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.rgba


class OracleViewDepth:
    """True planar depth of the view it is given (looked up by :func:`frame_key` of its RGB)."""

    output, metric = "depth", True

    def __init__(self, rgba: np.ndarray, depth: np.ndarray):
        self.maps = {frame_key(np.ascontiguousarray(v[..., :3])): d for v, d in zip(rgba, depth)}

    def __call__(self, rgb: np.ndarray, focal_px: float | None = None) -> np.ndarray:
        return self.maps[frame_key(np.ascontiguousarray(rgb))]
