"""Set Scale for an imported camera solve (no ``bpy``): the factor a reference gives, scaling
about the ground's point, and the same reference for the backend's jobs.

The maths is ``shared_protocol.scale`` (the backend's too). A reference measured in the scene
(two points, or the camera's height above the ground) gives the factor that makes it measure
the known metres; the imported cameras, points and ground are then scaled about the ground
plane's point, rotations kept. The jobs that reuse the solve folder (the composite) get the
same reference as two points in the folder's original world (``scale_distance`` +
``scale_xyz``), so the backend applies the identical factor to the files.
"""
from __future__ import annotations

import json

import numpy as np

from ..vendor import module

scale = module("scale")
ScaleError = scale.ScaleError


def factor_from_points(a, b, distance: float) -> float:
    """Factor that puts ``a`` and ``b`` ``distance`` metres apart."""
    if not (np.isfinite(distance) and distance > 0):
        raise ScaleError(f"the known distance must be a positive number of metres, got {distance}")
    return float(distance) / scale.point_distance(a, b)


def camera_foot(position, pivot, normal) -> np.ndarray:
    """The ground point under a camera position."""
    n = np.asarray(normal, np.float64)
    n = n / np.linalg.norm(n)
    p = np.asarray(position, np.float64)
    h = float((p - np.asarray(pivot, np.float64)) @ n)
    if not h > 1e-12:
        raise ScaleError("the camera is not above the ground plane")
    return p - h * n


def scale_about(xyz, factor: float, pivot) -> np.ndarray:
    return scale.scale_about(xyz, factor, pivot)


def original_points(points, pivot, applied: float) -> np.ndarray:
    """Scene points in the solve folder's world, undoing the factor already ``applied``."""
    return scale.scale_about(points, 1.0 / float(applied), pivot)


def record_for(kind: str, distance: float) -> dict:
    if kind == "CAMERA":
        return scale.make_info("camera_height", distance, None, "camera",
                               f"the camera {distance:g} m above the ground (Set Scale in Blender)")
    return scale.make_info("known_distance", distance, None, "xyz",
                           f"{distance:g} m between two points picked in Blender")


def job_reference(a_orig, b_orig, distance: float) -> dict:
    """Job params that make the backend apply the same scale to the solve folder."""
    xyz = np.concatenate([np.asarray(a_orig, np.float64), np.asarray(b_orig, np.float64)])
    return {"scale_distance": float(distance), "scale_xyz": ",".join(repr(float(v)) for v in xyz)}


#: job parameters of a scale reference (``splatstage poses/composite/scale`` options)
REFERENCE_KEYS = ("camera_height", "scale_distance", "scale_xyz", "scale_pixels", "scale_height", "scale_foot_top")


def scale_params(text: str) -> dict:
    """The stored job reference (empty when the scale was never set in Blender)."""
    if not text:
        return {}
    params = json.loads(text)
    return {k: params[k] for k in REFERENCE_KEYS if k in params}


def _frame_pixels(text: str, what: str) -> tuple[int, list[float]]:
    try:
        v = [float(x) for x in str(text).split(",")]
    except ValueError:
        v = []
    if len(v) != 5 or v[0] != int(v[0]) or v[0] < 0:
        raise ScaleError(f"{what} must be F,X,Y,X,Y (a video frame and two pixels), got {text!r}")
    return int(v[0]), v[1:]


def measure_reference(doc: dict, params: dict) -> tuple[float, dict]:
    """``(factor, record)`` of a job-style reference (camera height, two ground pixels with a
    distance, or foot and top pixels with a height) on a cameras.json document."""
    if params.get("camera_height") is not None:
        return scale.measure(doc, "camera_height", float(params["camera_height"]))
    if params.get("scale_pixels") is not None:
        frame, px = _frame_pixels(params["scale_pixels"], "scale pixels")
        return scale.measure(doc, "ground_pixels", float(params.get("scale_distance") or 0.0), frame=frame, pixels=px)
    if params.get("scale_foot_top") is not None:
        frame, px = _frame_pixels(params["scale_foot_top"], "scale foot/top")
        return scale.measure(doc, "foot_top", float(params.get("scale_height") or 0.0), frame=frame, pixels=px)
    raise ScaleError("no scale reference (camera height, two ground pixels or a foot and top pixel)")


def describe(record_text: str) -> tuple[str, bool]:
    """(one line, is it the guess) for a stored scale record (empty: the guess)."""
    info = scale.info_of({"stats": {"scale": json.loads(record_text)}}) if record_text else scale.default_info()
    guess = scale.is_guess(info)
    if guess:
        return f"Scale is a guess (camera {info['value']:g} m above the ground): use Set Scale", True
    return scale.describe(info), False
