"""Where a world point appears in the footage: the pixel the composite's placement expects.

The composite job places the product on the ground under a footage pixel (U, V) of a video
frame. :func:`footage_pixel` gives that pixel for a world point (e.g. the 3D cursor set on the
imported ground) from the solve's cameras.json, with the solve's lens distortion applied, since
the job reads pixels of the distorted footage. Pixel (0, 0) is the top-left corner of the image.
Nothing here imports ``bpy``.
"""
from __future__ import annotations

import numpy as np

from .job_params import ParamError


def camera_for_video_frame(doc: dict, video_frame: int) -> dict:
    """The registered cameras.json frame showing ``video_frame`` (by ``source``, else ``frame``)."""
    for fr in doc.get("frames") or []:
        src = str(fr.get("source", ""))
        index = int(src) if src.strip().isdigit() else int(fr["frame"])
        if index == video_frame and fr.get("registered", True):
            return fr
    raise ParamError(f"video frame {video_frame} has no solved camera")


def footage_pixel(doc: dict, video_frame: int, point) -> tuple[float, float]:
    """Footage pixel (u, v) of world ``point`` seen by the solved camera of ``video_frame``.

    Raises ParamError when the frame has no camera, the point is behind the camera or it
    falls outside the image.
    """
    fr = camera_for_video_frame(doc, int(video_frame))
    c2w = np.asarray(fr["matrix_world"], np.float64)
    w2c = np.linalg.inv(c2w)
    pc = w2c[:3, :3] @ np.asarray(point, np.float64) + w2c[:3, 3]   # camera looks down -Z, +Y up
    depth = -pc[2]
    if not depth > 1e-9:
        raise ParamError(f"the point is behind the camera of video frame {video_frame}")
    x, y = pc[0] / depth, -pc[1] / depth                              # image x right, y down
    dist = doc.get("distortion") or {}
    k1, k2 = float(dist.get("k1", 0.0)), float(dist.get("k2", 0.0))
    r2 = x * x + y * y
    s = 1.0 + k1 * r2 + k2 * r2 * r2
    f = float(fr["focal_px"])
    cx, cy = (float(c) for c in fr["principal_point_px"])
    u, v = f * x * s + cx, f * y * s + cy
    w, h = int(doc["width"]), int(doc["height"])
    if not (0.0 <= u <= w and 0.0 <= v <= h):
        raise ParamError(f"the point is outside video frame {video_frame} (pixel {u:.1f}, {v:.1f} of {w}x{h})")
    return float(u), float(v)
