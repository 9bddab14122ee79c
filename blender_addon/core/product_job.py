"""Parameters of the backend's ``product`` job from the *Product from Photo* button (bpy-free).

The keys are those ``splatstage product`` sends. A bad input raises
:class:`.job_params.ParamError` with one line, and nothing is submitted.
"""
from __future__ import annotations

import math
from pathlib import Path

from .job_params import ParamError

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def product_params(photo: str, height: float = 0.3, elevation: float = 0.0, box: str = "",
                   preview: bool = False) -> dict:
    """The ``product`` job's params for ``photo``, ``height`` metres tall."""
    if not photo:
        raise ParamError("choose a product photo")
    p = Path(photo)
    if not p.is_file():
        raise ParamError(f"{photo}: photo not found")
    if p.suffix.lower() not in PHOTO_SUFFIXES:
        raise ParamError(f"{p.name}: not a photo ({', '.join(PHOTO_SUFFIXES)})")
    if not (math.isfinite(height) and 0 < height <= 100):
        raise ParamError(f"height must be in (0, 100] m, got {height:g}")
    if not -90 < elevation < 90:
        raise ParamError(f"elevation must be in (-90, 90) degrees, got {elevation:g}")
    params = {"photo": str(p), "height": float(height), "elevation": float(elevation)}
    if box.strip():
        params["box"] = box.strip()
    if preview:
        params.update({"train_size": 128, "steps": 150, "turntable_frames": 16, "turntable_size": 128,
                       "mesh_res": 64, "max_points": 8000})
    return params
