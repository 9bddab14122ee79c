"""Multi-view generation from one image: a diffusers pipeline folder in ``weights/multiview/``.

The folder is what ``pipeline.save_pretrained(folder)`` writes (``model_index.json`` and the
component folders; a custom pipeline such as Zero123++ keeps its ``pipeline.py`` beside them)
plus ``splatstage_views.json``, which states the fixed camera of every generated view. The poses
are part of the model, never guessed:

```
{"views": [{"azimuth_deg": 30, "elevation_deg": 20}, ...],  # one entry per generated view
 "fov_deg": 30.0,            # vertical = horizontal field of view of the (square) views
 "radius": 2.7,              # camera distance from the object's centre, in the model's units
 "grid": [3, 2],             # optional: the pipeline returns one image of rows x cols tiles
 "relative_elevation": false, # true: elevations are relative to the input photo's (--elevation)
 "background": [0.5, 0.5, 0.5], # the views' background colour (cut out when no alpha comes back)
 "input_size": 320, "steps": 28, "guidance_scale": 4.0}     # optional call settings
```

Angles: ``azimuth_deg`` turns about +Z (up), counter-clockwise seen from above, 0 being the
input photo's viewpoint (a camera on -Y looking along +Y); ``elevation_deg`` is above the
horizon. A view may override ``fov_deg`` and ``radius``.

A model is a callable ``model(rgb uint8 (S, S, 3)) -> uint8 (V, H, W, 3 or 4)`` with attribute
``views`` (:class:`ViewSet`), so tests plug in stand-ins that return renders of a known object.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.progress import JobError

from . import DEFAULT_WEIGHTS

MULTIVIEW_DIR = "multiview"
VIEWS_FILE = "splatstage_views.json"
README = "weights/README.md"


@dataclass
class View:
    azimuth_deg: float
    elevation_deg: float
    fov_deg: float
    radius: float


@dataclass
class ViewSet:
    views: list[View]
    grid: tuple[int, int] | None = None
    relative_elevation: bool = False
    background: tuple[float, float, float] = (0.5, 0.5, 0.5)
    input_size: int = 320
    steps: int = 28
    guidance_scale: float = 4.0
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.views)


def _number(doc: dict, key: str, where: str, default=None, lo=None, hi=None) -> float:
    v = doc.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise JobError(f"{where}: {key} must be a number, got {v!r}", "bad_weights")
    if (lo is not None and v <= lo) or (hi is not None and v >= hi):
        raise JobError(f"{where}: {key} must be in ({lo}, {hi}), got {v}", "bad_weights")
    return float(v)


def parse_views(doc: dict, where: str = VIEWS_FILE) -> ViewSet:
    """A :class:`ViewSet` from the JSON object of ``splatstage_views.json``."""
    if not isinstance(doc, dict) or not isinstance(doc.get("views"), list) or len(doc["views"]) < 2:
        raise JobError(f"{where}: needs a list 'views' of at least 2 views", "bad_weights")
    fov = doc.get("fov_deg")
    radius = doc.get("radius")
    views = []
    for i, v in enumerate(doc["views"]):
        if not isinstance(v, dict):
            raise JobError(f"{where}: view {i} is not an object", "bad_weights")
        w = f"{where} view {i}"
        views.append(View(azimuth_deg=_number(v, "azimuth_deg", w),
                          elevation_deg=_number(v, "elevation_deg", w, lo=-90, hi=90),
                          fov_deg=_number(v, "fov_deg", w, fov, lo=0, hi=180),
                          radius=_number(v, "radius", w, radius, lo=0)))
    grid = doc.get("grid")
    if grid is not None:
        if (not isinstance(grid, list) or len(grid) != 2 or not all(isinstance(g, int) and g > 0 for g in grid)
                or grid[0] * grid[1] != len(views)):
            raise JobError(f"{where}: grid must be [rows, cols] with rows x cols = {len(views)} views",
                           "bad_weights")
        grid = (grid[0], grid[1])
    bg = doc.get("background", [0.5, 0.5, 0.5])
    if not (isinstance(bg, list) and len(bg) == 3 and all(isinstance(c, (int, float)) and 0 <= c <= 1 for c in bg)):
        raise JobError(f"{where}: background must be three numbers in [0, 1]", "bad_weights")
    known = {"views", "fov_deg", "radius", "grid", "relative_elevation", "background", "input_size",
             "steps", "guidance_scale"}
    return ViewSet(views=views, grid=grid, relative_elevation=bool(doc.get("relative_elevation", False)),
                   background=tuple(float(c) for c in bg),
                   input_size=int(_number(doc, "input_size", where, 320, lo=15)),
                   steps=int(_number(doc, "steps", where, 28, lo=0)),
                   guidance_scale=_number(doc, "guidance_scale", where, 4.0),
                   extra={k: v for k, v in doc.items() if k not in known})


def read_views(folder: str | Path) -> ViewSet:
    path = Path(folder) / VIEWS_FILE
    if not path.is_file():
        raise JobError(f"no multi-view model: {path} is missing (the fixed view poses of the model; "
                       f"see {README})", "missing_weights")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise JobError(f"cannot read {path}: {str(exc).splitlines()[0]}", "bad_weights") from exc
    return parse_views(doc, str(path))


def split_grid(image: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Tiles of a rows x cols grid image, row-major: (rows * cols, h, w, C)."""
    rows, cols = grid
    h, w = image.shape[0] // rows, image.shape[1] // cols
    return np.stack([image[r * h:(r + 1) * h, c * w:(c + 1) * w] for r in range(rows) for c in range(cols)])


class DiffusersMultiview:
    """A diffusers multi-view pipeline folder with its ``splatstage_views.json``."""

    def __init__(self, folder: str | Path, device: str = "cpu", seed: int = 0):
        folder = Path(folder)
        if not (folder / "model_index.json").is_file():
            raise JobError(f"no multi-view model: {folder / 'model_index.json'} is missing (a diffusers "
                           f"pipeline saved with save_pretrained; see {README})", "missing_weights")
        self.views = read_views(folder)
        try:
            import diffusers
            import torch
        except ImportError as exc:
            raise JobError(f"the multi-view model needs the diffusers and transformers packages ({exc})",
                           "missing_dependency") from exc
        kw = {"custom_pipeline": str(folder)} if (folder / "pipeline.py").is_file() else {}
        try:
            self.pipe = diffusers.DiffusionPipeline.from_pretrained(str(folder), local_files_only=True, **kw)
        except Exception as exc:  # diffusers raises many kinds for broken folders
            raise JobError(f"cannot load multi-view model {folder}: {str(exc).splitlines()[0]}",
                           "bad_weights") from exc
        self.pipe = self.pipe.to(device)
        if hasattr(self.pipe, "set_progress_bar_config"):
            self.pipe.set_progress_bar_config(disable=True)
        self.device, self.seed, self._torch = device, seed, torch

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        from PIL import Image

        v = self.views
        img = Image.fromarray(np.ascontiguousarray(rgb)).resize((v.input_size, v.input_size), Image.LANCZOS)
        gen = self._torch.Generator(device="cpu").manual_seed(self.seed)
        kw = {"num_inference_steps": v.steps, "generator": gen, "output_type": "np"}
        if v.guidance_scale is not None:
            kw["guidance_scale"] = v.guidance_scale
        if v.grid is None:
            kw["num_images_per_prompt"] = len(v)
        out = self.pipe(img, **kw)
        images = np.asarray(out.images if hasattr(out, "images") else out[0])
        if images.dtype != np.uint8:
            images = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
        if v.grid is not None:
            images = split_grid(images[0], v.grid)
        if len(images) != len(v):
            raise JobError(f"the multi-view model returned {len(images)} views, its {VIEWS_FILE} lists "
                           f"{len(v)}", "bad_model_output")
        return images


def multiview_folder(weights_dir: str | Path | None = None) -> Path:
    return (Path(weights_dir) if weights_dir else DEFAULT_WEIGHTS) / MULTIVIEW_DIR


def load_multiview_model(weights_dir: str | Path | None = None, device: str = "cpu", seed: int = 0):
    """The multi-view model in ``weights_dir/multiview`` (default ``weights/``); JobError
    ``missing_weights`` naming the missing file."""
    return DiffusersMultiview(multiview_folder(weights_dir), device=device, seed=seed)
