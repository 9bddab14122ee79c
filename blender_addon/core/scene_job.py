"""Parameters of the backend's ``scene`` job from the *Scene from Image* panel (bpy-free).

The panel names one photo, or a folder holding 2-8 photos of one place; the job's keys are
those ``splatstage scene`` sends. A bad input raises :class:`.job_params.ParamError` with one
line, and nothing is submitted.
"""
from __future__ import annotations

from pathlib import Path

from .job_params import ParamError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
MAX_IMAGES = 8


def scene_images(path: str) -> list[str]:
    """The photo ``path``, or the photos of the folder ``path`` in name order."""
    if not path:
        raise ParamError("choose a photo (or a folder of 2-8 photos of one place)")
    p = Path(path)
    if p.is_file():
        return [str(p)]
    if p.is_dir():
        found = sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not 1 <= len(found) <= MAX_IMAGES:
            raise ParamError(f"{p} holds {len(found)} photos; a scene takes 1 to {MAX_IMAGES}")
        return found
    raise ParamError(f"{path}: photo or folder not found")


def scene_params(image_path: str, prompt: str = "", views: int = 8, steps: int = 300, rounds: int = 1,
                 fov: float = 0.0, max_size: int = 1024) -> dict:
    """The ``scene`` job's params (``fov`` 0: the photo's EXIF, else 60 degrees)."""
    if views < 1 or steps < 0 or rounds < 0 or max_size < 32:
        raise ParamError("views must be >= 1, steps and rounds >= 0, max size >= 32")
    if fov and not 1.0 <= fov <= 179.0:
        raise ParamError(f"field of view must be in [1, 179] degrees, got {fov:g}")
    return {"images": scene_images(image_path), "prompt": prompt, "views": int(views), "steps": int(steps),
            "rounds": int(rounds), "fov": float(fov) if fov else None, "max_size": int(max_size)}
