"""Equirectangular environment map rendered from the splats at the product's position.

Six 90-degree cube faces are rendered by the render service (RGB and alpha), resampled into
one equirectangular image in Blender's convention (:func:`equirect_directions`), and written
as a float EXR for the world shader. Directions the splats leave uncovered (typically the sky
above an indoor capture) are filled with the alpha-weighted mean colour of the covered ones.
The splats' colours are the footage's sRGB-encoded values; they are decoded to linear light
(:func:`srgb_to_linear`) so that the map holds the radiance the camera saw (with
``linear=False``, the encoded values are taken as linear, which overstates dark and mid tones:
a mid-grey 0.5 is 0.21 in linear light).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: (forward, up) of each cube face in world axes.
FACES = {
    "+x": ((1, 0, 0), (0, 0, 1)), "-x": ((-1, 0, 0), (0, 0, 1)),
    "+y": ((0, 1, 0), (0, 0, 1)), "-y": ((0, -1, 0), (0, 0, 1)),
    "+z": ((0, 0, 1), (0, -1, 0)), "-z": ((0, 0, -1), (0, 1, 0)),
}


def face_matrices(position) -> np.ndarray:
    """Camera-to-world matrices (Blender camera axes) of the six faces at ``position``."""
    out = []
    for fwd, up in FACES.values():
        f, u = np.asarray(fwd, float), np.asarray(up, float)
        r = np.cross(f, u)
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2] = r, u, -f
        m[:3, 3] = position
        out.append(m)
    return np.stack(out)


def equirect_directions(width: int, height: int) -> np.ndarray:
    """Unit world direction of each pixel centre (H, W, 3) of an equirectangular image as
    Blender's Environment Texture maps it: u = 0.5 - atan2(y, x) / (2 pi) (the centre column
    faces +X), row 0 at the top is +Z."""
    u = (np.arange(width) + 0.5) / width
    v = (np.arange(height) + 0.5) / height
    phi = (0.5 - u) * 2.0 * np.pi  # atan2(y, x)
    theta = v * np.pi  # polar angle from +Z
    st = np.sin(theta)[:, None]
    return np.stack([st * np.cos(phi)[None, :], st * np.sin(phi)[None, :],
                     np.repeat(np.cos(theta)[:, None], width, 1)], -1)


def cube_to_equirect(faces_rgba: np.ndarray, matrices: np.ndarray, height: int) -> np.ndarray:
    """Resample six square RGBA faces (6, S, S, 4) seen through ``matrices`` into an
    equirectangular RGBA image (height, 2 * height, 4), bilinearly."""
    s = faces_rgba.shape[1]
    d = equirect_directions(2 * height, height).reshape(-1, 3)
    fwd = -matrices[:, :3, 2]  # (6, 3)
    face = np.argmax(d @ fwd.T, axis=1)
    out = np.zeros((len(d), 4), np.float32)
    for k in range(6):
        sel = face == k
        r = matrices[k, :3, :3]
        pc = d[sel] @ r  # Blender camera axes
        z = -pc[:, 2]
        x, y = pc[:, 0] / z, -pc[:, 1] / z  # OpenCV image plane, in [-1, 1]
        px = np.clip((x + 1.0) * 0.5 * s - 0.5, 0, s - 1)
        py = np.clip((y + 1.0) * 0.5 * s - 0.5, 0, s - 1)
        x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
        x1, y1 = np.minimum(x0 + 1, s - 1), np.minimum(y0 + 1, s - 1)
        fx, fy = (px - x0)[:, None], (py - y0)[:, None]
        img = faces_rgba[k]
        out[sel] = ((img[y0, x0] * (1 - fx) + img[y0, x1] * fx) * (1 - fy)
                    + (img[y1, x0] * (1 - fx) + img[y1, x1] * fx) * fy)
    return out.reshape(height, 2 * height, 4)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] to linear light (IEC 61966-2-1)."""
    x = np.asarray(x, np.float64)
    return np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0.04045) + 0.055) / 1.055) ** 2.4)


def fill_uncovered(rgba: np.ndarray) -> np.ndarray:
    """RGB of an equirectangular RGBA map with the uncovered part (1 - alpha) filled by the
    mean covered colour, weighted by solid angle (rows near the poles cover less of the
    sphere). The render service's RGB is already premultiplied over a black background."""
    h = rgba.shape[0]
    w = np.sin((np.arange(h) + 0.5) / h * np.pi)[:, None, None]  # solid angle per pixel, up to a constant
    a = rgba[..., 3:4]
    total = float((a * w).sum())
    mean = (rgba[..., :3] * w).reshape(-1, 3).sum(0) / total if total > 0 else np.full(3, 0.5)
    return (rgba[..., :3] + (1.0 - a) * mean).astype(np.float32)


def render_envmap(splats_path: str | Path, position, path: Path, face: int = 256, device: str = "cpu",
                  linear: bool = True) -> Path:
    """Render the environment map at ``position`` (world) into ``path`` (EXR, R G B); ``linear``
    decodes the splats' sRGB colours to linear light first."""
    from backend.pipelines.render import cameras_from_arrays, render_views
    from backend.pipelines.render.writers import write_exr
    from backend.pipelines.splats_io import load_splats

    mats = face_matrices(np.asarray(position, np.float64))
    cams = cameras_from_arrays(mats, face / 2.0, (face / 2.0, face / 2.0), face, face, names=list(FACES))
    out = render_views(load_splats(splats_path), cams, device=device, batch=6)
    # a face that sees no splat at all comes back as NaN from the CPU rasterizer: uncovered
    rgba = np.nan_to_num(np.concatenate([out["rgb"], out["alpha"][..., None]], -1), nan=0.0)
    if linear:  # un-premultiply over black, decode, premultiply again
        a = rgba[..., 3:4]
        straight = np.where(a > 1e-6, rgba[..., :3] / np.maximum(a, 1e-6), 0.0).clip(0.0, 1.0)
        rgba[..., :3] = srgb_to_linear(straight) * a
    rgb = fill_uncovered(cube_to_equirect(rgba, mats, face))
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    write_exr(tmp, {"R": rgb[..., 0], "G": rgb[..., 1], "B": rgb[..., 2]})
    tmp.replace(path)
    return path
