"""Stand-ins for the scene pipeline's models (:mod:`backend.pipelines.scene.models`) that
return a synthetic scene's truth: the ray-cast scene of
:mod:`backend.evaluation.raycast_scene` seen through the view the pipeline asks about.

``to_truth`` maps the pipeline's working frame to the scene's world (4x4, Blender cameras):
the input photo's true ``matrix_world`` when the working frame has that camera at the identity.
The depth stand-in returns the true depth along the viewing axis (times ``1 + noise * N(0, 1)``
per pixel), the inpainter the true render inside the hole and the pixels it was given outside,
the denoiser the true render. Pixels are never looked at: the pipeline's warping, masking,
alignment, fusion and training are what a run with them checks.
"""
from __future__ import annotations

import numpy as np


class OracleSceneModels:
    metric = True

    def __init__(self, scene, to_truth: np.ndarray, noise: float = 0.0, supersample: int = 2, seed: int = 0):
        self.scene, self.to_truth = scene, np.asarray(to_truth, np.float64)
        self.noise, self.supersample = noise, supersample
        self.rng = np.random.default_rng(seed)
        self.calls = {"depth": 0, "inpaint": 0, "denoise": 0}

    def true_c2w(self, view) -> np.ndarray:
        return self.to_truth @ np.asarray(view.c2w, np.float64)

    def render(self, view) -> np.ndarray:
        return self.scene.render(self.true_c2w(view), view.focal, view.width, view.height, self.supersample)

    def depth(self, rgb, view) -> np.ndarray:
        self.calls["depth"] += 1
        d = self.scene.depth(self.true_c2w(view), view.focal, view.width, view.height).astype(np.float64)
        if self.noise:
            d *= 1.0 + self.noise * self.rng.standard_normal(d.shape)
        return d.astype(np.float32)

    def inpaint(self, rgb, hole, view) -> np.ndarray:
        self.calls["inpaint"] += 1
        out = np.array(rgb, np.uint8)
        hole = np.asarray(hole, bool)
        out[hole] = self.render(view)[hole]
        return out

    def denoise(self, rgb, view, strength) -> np.ndarray:
        self.calls["denoise"] += 1
        return self.render(view)


#: The photo's camera in the ray-cast room: 1.6 m above the floor, looking over the boxes.
PHOTO_EYE, PHOTO_TARGET = (0.0, -1.5, 1.6), (0.0, 2.0, 0.8)


def oracle_photo(width: int = 320, height: int = 180, focal: float = 250.0, texels_per_metre: float = 40.0):
    """``(scene, c2w, rgb)``: the ray-cast room (its texture at ``texels_per_metre``), the true
    Blender camera of a photo of it and the photo (``width`` x ``height``, ``focal`` px)."""
    from backend.evaluation.raycast_scene import Scene, look_at

    scene = Scene(texels_per_metre=texels_per_metre)
    c2w = look_at(PHOTO_EYE, PHOTO_TARGET)
    return scene, c2w, scene.render(c2w, focal, width, height, 2)
