"""The scene's model calls, behind one small interface.

:class:`View` is the camera a model call is about (Blender ``matrix_world`` in the scene's
working frame, focal length in pixels, size). The pipeline calls

- ``models.depth(rgb, view)`` -> (H, W) float32 depth along the viewing axis (metres when
  ``models.metric``, else relative), NaN/inf where there is none (sky);
- ``models.inpaint(rgb, hole, view)`` -> (H, W, 3) uint8, ``rgb`` with the ``hole`` pixels
  generated (outpainting and warp-and-inpaint);
- ``models.denoise(rgb, view, strength)`` -> (H, W, 3) uint8, a light diffusion clean-up of a
  splat render, conditioned on it.

:class:`LearnedModels` runs the depth model of :mod:`backend.models.depth` and the diffusion
inpainter of :mod:`backend.models.inpaint`, which see only the pixels; a test plugs in
stand-ins that use the view to return a synthetic scene's truth
(:mod:`backend.models.scene_oracles`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class View:
    c2w: np.ndarray  # 4x4 Blender camera-to-world, scene working frame
    focal: float  # px
    width: int
    height: int


class Timed:
    """Wraps a models object and adds up the seconds spent in its calls (``seconds``)."""

    def __init__(self, models):
        self.inner, self.seconds, self.calls = models, 0.0, 0
        self.metric = bool(getattr(models, "metric", False))

    def _call(self, name, *args):
        t = time.perf_counter()
        try:
            return getattr(self.inner, name)(*args)
        finally:
            self.seconds += time.perf_counter() - t
            self.calls += 1

    def depth(self, rgb, view):
        return self._call("depth", rgb, view)

    def inpaint(self, rgb, hole, view):
        return self._call("inpaint", rgb, hole, view)

    def denoise(self, rgb, view, strength):
        return self._call("denoise", rgb, view, strength)


class LearnedModels:
    """A depth model (``weights/depth/``) and a diffusers inpainting pipeline
    (``weights/inpaint/``); both load at construction, so missing weights fail before any work."""

    def __init__(self, weights_dir: str | Path | None = None, prompt: str = "", device: str = "cpu",
                 steps: int = 20, seed: int = 0):
        from backend.models import DEFAULT_WEIGHTS
        from backend.models.depth import load_depth_model
        from backend.models.inpaint import DiffusersInpainter

        weights = Path(weights_dir) if weights_dir else DEFAULT_WEIGHTS
        self.depth_model = load_depth_model(weights, device=device)
        self.metric = bool(self.depth_model.metric)
        self.inpainter = DiffusersInpainter(weights, device=device, steps=steps, prompt=prompt, seed=seed)

    def depth(self, rgb: np.ndarray, view: View) -> np.ndarray:
        y = np.asarray(self.depth_model(rgb, view.focal), np.float32)
        if y.shape != rgb.shape[:2]:
            from backend.progress import JobError

            raise JobError(f"scene: the depth model returned a {y.shape} map for a {rgb.shape[:2]} image",
                           "bad_model_output")
        if getattr(self.depth_model, "output", "depth") == "inverse_depth":
            with np.errstate(divide="ignore", invalid="ignore"):
                y = 1.0 / y
        return np.where(np.isfinite(y) & (y > 0), y, np.nan).astype(np.float32)

    def inpaint(self, rgb: np.ndarray, hole: np.ndarray, view: View) -> np.ndarray:
        return np.clip(np.rint(self.inpainter(rgb, hole)), 0, 255).astype(np.uint8)

    def denoise(self, rgb: np.ndarray, view: View, strength: float) -> np.ndarray:
        return np.clip(np.rint(self.inpainter.denoise(rgb, strength)), 0, 255).astype(np.uint8)
