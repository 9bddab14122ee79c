"""A scene from one photo (or 2-8 photos of one place), VistaDream's two stages on the
project's own parts (docs/scene.md).

| module | what it does |
|---|---|
| `images.py` | reads and checks the photos (EXIF orientation, grayscale, 16-bit, size) |
| `models.py` | the model interface (depth, inpaint, denoise of a :class:`View`) and the learned models behind it |
| `lift.py` | pixels to Gaussians, far (sky) depth, depth alignment, the masks of warp-and-inpaint |
| `trajectory.py` | the spiral of one photo, the path through several photos' solved cameras |
| `coarse.py` | outpainting, lifting, warp-and-inpaint along the trajectory |
| `refine.py` | training with fixed cameras, render -> denoise -> retrain rounds |
| `outputs.py` | the ground plane and world frame, cameras.json, strips |
| `pipeline.py` | :func:`make_scene`, the whole run |
"""
from .pipeline import SceneOptions, make_scene  # noqa: F401
