"""Optional view enhancement: diffusers img2img with a depth ControlNet, in ``weights/enhance/``.

The folder is a ``StableDiffusionControlNetImg2ImgPipeline`` saved with ``save_pretrained``
(``model_index.json`` with its ``controlnet`` component, a depth ControlNet). Each view is
re-rendered at a low ``strength`` conditioned on its depth, so textures sharpen while the shape
stays; only pixels inside the view's silhouette change. Without the folder there is no
enhancement (:func:`load_enhancer` returns None).

A model is a callable ``model(rgb uint8 (H, W, 3), depth (H, W), alpha (H, W)) -> uint8 (H, W, 3)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.progress import JobError

from . import DEFAULT_WEIGHTS

ENHANCE_DIR = "enhance"


class DiffusersEnhancer:
    def __init__(self, folder: str | Path, device: str = "cpu", strength: float = 0.25, steps: int = 20,
                 prompt: str = "a product photo, sharp details", seed: int = 0):
        folder = Path(folder)
        try:
            import diffusers
            import torch
        except ImportError as exc:
            raise JobError(f"view enhancement needs the diffusers package ({exc})", "missing_dependency") from exc
        try:
            self.pipe = diffusers.StableDiffusionControlNetImg2ImgPipeline.from_pretrained(
                str(folder), local_files_only=True, safety_checker=None, requires_safety_checker=False)
        except Exception as exc:  # diffusers raises many kinds for broken folders
            raise JobError(f"cannot load enhancement model {folder}: {str(exc).splitlines()[0]}",
                           "bad_weights") from exc
        self.pipe = self.pipe.to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.strength, self.steps, self.prompt, self.seed, self._torch = strength, steps, prompt, seed, torch
        self.multiple = 8 * int(getattr(self.pipe, "vae_scale_factor", 8))

    def __call__(self, rgb: np.ndarray, depth: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        import cv2
        from PIL import Image

        h, w = rgb.shape[:2]
        m = self.multiple
        s = max(m, int(round(max(h, w) / m)) * m)
        inv = np.where(np.isfinite(depth) & (depth > 0), 1.0 / np.maximum(depth, 1e-6), 0.0)
        ctrl = (255 * inv / max(float(inv.max()), 1e-9)).astype(np.uint8)
        img = Image.fromarray(np.ascontiguousarray(rgb)).resize((s, s), Image.BICUBIC)
        cond = Image.fromarray(np.repeat(ctrl[..., None], 3, -1)).resize((s, s), Image.BILINEAR)
        gen = self._torch.Generator(device="cpu").manual_seed(self.seed)
        out = self.pipe(prompt=self.prompt, image=img, control_image=cond, strength=self.strength,
                        num_inference_steps=self.steps, generator=gen, output_type="np").images[0]
        out = cv2.resize((np.clip(out, 0, 1) * 255).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        a = np.clip(alpha, 0, 1)[..., None]
        return np.clip(np.rint(out * a + rgb * (1 - a)), 0, 255).astype(np.uint8)


def load_enhancer(weights_dir: str | Path | None = None, device: str = "cpu", seed: int = 0):
    """The enhancement model of ``weights_dir/enhance`` or None when the folder is absent."""
    folder = (Path(weights_dir) if weights_dir else DEFAULT_WEIGHTS) / ENHANCE_DIR
    if not (folder / "model_index.json").is_file():
        return None
    return DiffusersEnhancer(folder, device=device, seed=seed)
