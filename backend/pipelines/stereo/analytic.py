"""An analytic stereo clip with exact ground truth: textured fronto-parallel layers.

Each layer is a plane at depth ``Z`` carrying a smooth random texture, seen by a parallel
stereo rig (focal ``f`` px, interaxial ``B``), so its disparity is exactly ``f * B / Z`` px
everywhere on it and both eyes are the layers composited back to front. Layers may move
horizontally with a constant velocity (px/frame in the left view). Used by tests and the
benchmark to check warping, temporal filling and flicker against truth.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class Layer:
    """A textured rectangle ``[x0, x0 + width) x [y0, y0 + height)`` (left view, frame 0) at ``depth``."""

    depth: float
    x0: float = -1e8
    y0: float = -1e8
    width: float = 2e8
    height: float = 2e8
    velocity: float = 0.0
    seed: int = 0
    texture: np.ndarray | None = field(default=None, repr=False)


def smooth_texture(h: int, w: int, seed: int, sigma: float = 2.0) -> np.ndarray:
    """Random RGB texture (H, W, 3) in [0, 255], Gaussian-blurred so it is smooth at ``sigma`` px."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
    t = cv2.GaussianBlur(t, (0, 0), sigma)
    t -= t.min()
    return t * (255.0 / max(float(t.max()), 1e-6))


def render_view(layers: list[Layer], h: int, w: int, frame: int, focal_px: float, eye_offset: float):
    """Composite the layers as seen by a camera shifted ``eye_offset`` (metres) along +x.

    Returns ``(image (H, W, 3) float32, disparity (H, W) float32 of the left eye's geometry)``:
    the disparity of the surface seen at each pixel, ``f * B / Z`` for ``B = 1``, scaled by the caller.
    """
    img = np.zeros((h, w, 3), np.float32)
    disp = np.zeros((h, w), np.float32)
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    for layer in sorted(layers, key=lambda l: -l.depth):
        shift = layer.velocity * frame - focal_px * eye_offset / layer.depth
        tex = layer.texture
        if tex is None:
            tex = layer.texture = smooth_texture(h, w + 256, layer.seed)
        # the texture moves with the layer: sample it at the pixel minus the shift
        u = xs - shift + 128.0
        inside = (xs - shift >= layer.x0) & (xs - shift < layer.x0 + layer.width) & \
            (ys >= layer.y0) & (ys < layer.y0 + layer.height)
        mapx = np.broadcast_to(u, (h, w)).astype(np.float32)
        mapy = np.broadcast_to(ys, (h, w)).astype(np.float32)
        sampled = cv2.remap(tex, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        img[inside] = sampled[inside]
        disp[inside] = focal_px / layer.depth
    return img, disp


def stereo_clip(layers: list[Layer], h: int, w: int, frames: int, focal_px: float, interaxial: float):
    """Left eyes, true right eyes and left-eye disparities (px) of an analytic clip, as lists."""
    lefts, rights, disps = [], [], []
    for t in range(frames):
        left, d = render_view(layers, h, w, t, focal_px, 0.0)
        right, _ = render_view(layers, h, w, t, focal_px, interaxial)
        lefts.append(left)
        rights.append(right)
        disps.append(d * interaxial)
    return lefts, rights, disps
