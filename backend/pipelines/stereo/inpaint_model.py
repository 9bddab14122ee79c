"""Optional learned hole filling: a diffusers inpainting pipeline loaded from ``weights/inpaint/``.

The folder is what ``pipeline.save_pretrained(folder)`` writes (``model_index.json`` and the
component folders). It is loaded with ``local_files_only=True``: nothing is downloaded. The
model's fill is colour-matched to the warped image on a ring of valid pixels around the holes
(:mod:`.colour`), and only hole pixels are replaced.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from backend.pipelines.stereo.colour import fit_affine, apply_affine
from backend.progress import JobError

INPAINT_DIR = Path("inpaint")


class DiffusersInpainter:
    """Callable ``(image (H, W, 3) float 0..255, hole (H, W) bool) -> filled image``."""

    def __init__(self, weights_dir: str | Path, device: str = "cpu", steps: int = 20, prompt: str = "",
                 guidance_scale: float = 1.0, ring_px: int = 6, seed: int = 0):
        folder = Path(weights_dir) / INPAINT_DIR
        if not (folder / "model_index.json").is_file():
            raise JobError(f"no inpainting model: put a diffusers inpainting pipeline (save_pretrained output, "
                           f"with model_index.json) in {folder}, or use --fill background", "missing_weights")
        try:
            import diffusers
            import torch
        except ImportError as exc:
            raise JobError(f"--fill diffusers needs the diffusers and transformers packages ({exc})",
                           "missing_dependency", hint="pip install diffusers transformers") from exc
        try:
            self.pipe = diffusers.AutoPipelineForInpainting.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:  # diffusers raises many kinds for broken folders
            raise JobError(f"cannot load inpainting model {folder}: {str(exc).splitlines()[0]}",
                           "bad_input") from exc
        self.pipe = self.pipe.to(device)
        if hasattr(self.pipe, "set_progress_bar_config"):
            self.pipe.set_progress_bar_config(disable=True)
        self.device, self.steps, self.prompt = device, int(steps), prompt
        self.guidance_scale, self.ring_px, self.seed = float(guidance_scale), int(ring_px), int(seed)
        self._torch = torch
        self.multiple = int(getattr(self.pipe, "vae_scale_factor", 8)) * 1

    def __call__(self, image, hole) -> np.ndarray:
        from PIL import Image

        img = np.asarray(image, np.float32)
        hole = np.asarray(hole, bool)
        if not hole.any():
            return img.copy()
        h, w = hole.shape
        m = max(8, self.multiple)
        ph, pw = (-h) % m, (-w) % m
        u8 = np.pad(np.clip(np.rint(img), 0, 255).astype(np.uint8), ((0, ph), (0, pw), (0, 0)), mode="edge")
        mask = np.pad(hole, ((0, ph), (0, pw)), mode="edge").astype(np.uint8) * 255
        gen = self._torch.Generator(device="cpu").manual_seed(self.seed)
        out = self.pipe(prompt=self.prompt, image=Image.fromarray(u8), mask_image=Image.fromarray(mask),
                        height=h + ph, width=w + pw, num_inference_steps=self.steps,
                        guidance_scale=self.guidance_scale, generator=gen, output_type="np").images[0]
        fill = np.asarray(out, np.float32)[:h, :w] * 255.0
        k = 2 * self.ring_px + 1
        ring = cv2.dilate(hole.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool) & ~hole
        if ring.sum() >= 16:
            fill = apply_affine(fill, fit_affine(fill, img, ring))
        result = img.copy()
        result[hole] = fill[hole]
        return result
