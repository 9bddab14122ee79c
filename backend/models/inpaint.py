"""Diffusion inpainting from ``weights/inpaint/``: a diffusers inpainting pipeline folder.

The folder is what ``pipeline.save_pretrained(folder)`` writes (``model_index.json`` and the
component folders). It is loaded with ``local_files_only=True``: nothing is downloaded. Two
calls share the model:

- ``inpainter(image, hole)`` fills the hole pixels (stereo's hole fill, the scene's outpainting
  and warp-and-inpaint); the fill is colour-matched to the image on a ring of valid pixels
  around the holes (:mod:`backend.pipelines.stereo.colour`) and only hole pixels change;
- ``inpainter.denoise(image, strength)`` re-noises the whole image to ``strength`` (0..1) of
  the schedule and denoises it, conditioned on the image itself (a light clean-up of a splat
  render, as in the scene's refinement).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from backend.pipelines.stereo.colour import apply_affine, fit_affine
from backend.progress import JobError

INPAINT_DIR = Path("inpaint")
INDEX = "model_index.json"


def inpaint_folder(weights_dir: str | Path) -> Path:
    """``weights_dir/inpaint``; a folder that itself holds ``model_index.json`` is taken as is."""
    base = Path(weights_dir)
    return base if (base / INDEX).is_file() and not (base / INPAINT_DIR).is_dir() else base / INPAINT_DIR


class DiffusersInpainter:
    """Callable ``(image (H, W, 3) float 0..255, hole (H, W) bool) -> filled image``."""

    def __init__(self, weights_dir: str | Path, device: str = "cpu", steps: int = 20, prompt: str = "",
                 guidance_scale: float = 1.0, ring_px: int = 6, seed: int = 0):
        folder = inpaint_folder(weights_dir)
        if not (folder / INDEX).is_file():
            raise JobError(f"no inpainting model: {folder / INDEX} is missing (a diffusers inpainting pipeline "
                           f"saved with save_pretrained; see weights/README.md)", "missing_weights")
        try:
            import diffusers
            import torch
        except ImportError as exc:
            raise JobError(f"the inpainting model needs the diffusers and transformers packages ({exc})",
                           "missing_dependency", hint="pip install diffusers transformers") from exc
        try:
            self.pipe = diffusers.AutoPipelineForInpainting.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:  # diffusers raises many kinds for broken folders
            raise JobError(f"cannot load inpainting model {folder}: {str(exc).splitlines()[0]}",
                           "bad_weights") from exc
        self.pipe = self.pipe.to(device)
        if hasattr(self.pipe, "set_progress_bar_config"):
            self.pipe.set_progress_bar_config(disable=True)
        self.device, self.steps, self.prompt = device, int(steps), prompt
        self.guidance_scale, self.ring_px, self.seed = float(guidance_scale), int(ring_px), int(seed)
        self._torch = torch
        self.multiple = max(8, int(getattr(self.pipe, "vae_scale_factor", 8)))

    def _run(self, img: np.ndarray, mask: np.ndarray, strength: float = 1.0) -> np.ndarray:
        """The pipeline's output (H, W, 3) float 0..255 for ``img`` with ``mask`` (padded to the
        model's multiple by repeating the edge, cropped back). Below strength 1 the schedule
        has at least enough steps for one to run."""
        import math

        from PIL import Image

        h, w = mask.shape
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        u8 = np.pad(np.clip(np.rint(img), 0, 255).astype(np.uint8), ((0, ph), (0, pw), (0, 0)), mode="edge")
        mk = np.pad(mask, ((0, ph), (0, pw)), mode="edge").astype(np.uint8) * 255
        gen = self._torch.Generator(device="cpu").manual_seed(self.seed)
        out = self.pipe(prompt=self.prompt, image=Image.fromarray(u8), mask_image=Image.fromarray(mk),
                        height=h + ph, width=w + pw, strength=float(strength),
                        num_inference_steps=max(self.steps, math.ceil(1.0 / max(strength, 1e-3))),
                        guidance_scale=self.guidance_scale, generator=gen, output_type="np").images[0]
        return np.asarray(out, np.float32)[:h, :w] * 255.0

    def __call__(self, image, hole) -> np.ndarray:
        img = np.asarray(image, np.float32)
        hole = np.asarray(hole, bool)
        if not hole.any():
            return img.copy()
        fill = self._run(img, hole)
        k = 2 * self.ring_px + 1
        ring = cv2.dilate(hole.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool) & ~hole
        if ring.sum() >= 16:
            fill = apply_affine(fill, fit_affine(fill, img, ring))
        result = img.copy()
        result[hole] = fill[hole]
        return result

    def denoise(self, image, strength: float) -> np.ndarray:
        """``image`` (H, W, 3) float 0..255 re-noised to ``strength`` and denoised, conditioned
        on itself; colour-matched to it over the whole frame."""
        img = np.asarray(image, np.float32)
        if strength <= 0:
            return img.copy()
        out = self._run(img, np.ones(img.shape[:2], bool), min(1.0, float(strength)))
        return np.clip(apply_affine(out, fit_affine(out, img, np.ones(img.shape[:2], bool))), 0, 255)
