"""The input photos of a scene: read, checked and brought to 8-bit RGB at the working size.

Every photo is read with Pillow; the EXIF orientation is applied (a phone photo stands as it
was shot), grayscale and 16-bit images become 8-bit RGB, an alpha channel is dropped, and a
photo larger than ``max_size`` on its longer side is downscaled. Each of these is reported as
a note; what cannot be a photo of a scene (not an image, smaller than :data:`MIN_SIDE` pixels,
photos of different sizes) fails with one line naming the file (code ``bad_input``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.progress import JobError

MIN_SIDE = 32
MAX_IMAGES = 8
#: Default longest side the scene is built at.
DEFAULT_MAX_SIZE = 1024


@dataclass
class Photo:
    path: Path
    rgb: np.ndarray  # (H, W, 3) uint8 at the working size
    focal_35mm: float | None = None  # EXIF FocalLengthIn35mmFilm, when the camera wrote it
    notes: list[str] = field(default_factory=list)


def _to_rgb8(im, path: Path, notes: list[str]) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        notes.append(f"{path.name}: {'16-bit ' if top > 255 else ''}grayscale image taken as 8-bit RGB")
        g = np.clip(np.rint(a / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("L", "LA", "1"):
        notes.append(f"{path.name}: grayscale image taken as RGB")
    elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        notes.append(f"{path.name}: alpha channel dropped")
    return np.asarray(im.convert("RGB"), np.uint8)


def read_photo(path: str | Path, max_size: int | None = DEFAULT_MAX_SIZE) -> Photo:
    """One photo as 8-bit RGB (see the module docstring); raises JobError ``bad_input``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise JobError(f"scene: image not found: {path}", "bad_input")
    notes: list[str] = []
    try:
        with Image.open(path) as im:
            im.load()
            orientation = im.getexif().get(0x0112, 1)
            exif = im.getexif().get_ifd(0x8769)
            focal35 = exif.get(0xA405)
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb8(im, path, notes)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise JobError(f"scene: not a readable image: {path} ({str(exc).splitlines()[0]})", "bad_input") from None
    if orientation not in (None, 1):
        notes.append(f"{path.name}: EXIF orientation {orientation} applied")
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise JobError(f"scene: image {path} is {w}x{h}; a scene needs at least {MIN_SIDE} px on each side",
                       "bad_input")
    if max_size and max(h, w) > max_size:
        import cv2

        s = max_size / max(h, w)
        nw, nh = max(MIN_SIDE, round(w * s)), max(MIN_SIDE, round(h * s))
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        notes.append(f"{path.name}: {w}x{h} downscaled to {nw}x{nh} (max size {max_size})")
    f35 = float(focal35) if focal35 else None
    return Photo(path=path, rgb=np.ascontiguousarray(rgb), focal_35mm=f35, notes=notes)


def read_photos(paths, max_size: int | None = DEFAULT_MAX_SIZE) -> list[Photo]:
    """1 to :data:`MAX_IMAGES` photos of one place, all brought to the first one's size."""
    paths = [Path(p) for p in paths]
    if not 1 <= len(paths) <= MAX_IMAGES:
        raise JobError(f"scene: give 1 to {MAX_IMAGES} images, got {len(paths)}", "bad_params")
    photos = [read_photo(p, max_size) for p in paths]
    h, w = photos[0].rgb.shape[:2]
    for p in photos[1:]:
        ph, pw = p.rgb.shape[:2]
        if abs(pw / ph - w / h) > 0.01:
            raise JobError(f"scene: {p.path} is {pw}x{ph}, its aspect differs from {photos[0].path} ({w}x{h}); "
                           "give photos of one camera", "bad_input")
        if (ph, pw) != (h, w):
            import cv2

            p.rgb = cv2.resize(p.rgb, (w, h), interpolation=cv2.INTER_AREA)
            p.notes.append(f"{p.path.name}: resized to {w}x{h} like the first image")
    return photos


def focal_px(photo: Photo, fov_deg: float | None, width: int, height: int) -> tuple[float, str]:
    """Focal length in pixels: the given horizontal field of view, else the photo's EXIF 35 mm
    equivalent (36 mm across the longer side), else a 60 degree horizontal field of view."""
    if fov_deg is not None:
        return width / 2 / np.tan(np.radians(fov_deg) / 2), f"given field of view {fov_deg:g} deg"
    if photo.focal_35mm:
        return photo.focal_35mm / 36.0 * max(width, height), f"EXIF 35 mm focal {photo.focal_35mm:g} mm"
    return width / 2 / np.tan(np.radians(30.0)), "assumed 60 deg horizontal field of view"
