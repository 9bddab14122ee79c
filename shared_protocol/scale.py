"""World scale of a camera solve: where it came from, how sure it is, and re-scaling a solve
without solving again (stdlib + numpy only; the backend and the Blender add-on share it).

A monocular solve knows its world only up to scale. cameras.json records how the scale was set
in ``stats["scale"]``::

    {"source": "camera_height_default" | "camera_height" | "known_distance" | "known_height"
               | "metric_depth",
     "value": <the given metres (height or distance); metric depth: the factor applied>,
     "uncertainty_rel": <relative 1-sigma error of the scale, or null when unknown>,
     "reference": <what was measured, e.g. "ground_pixels", "points", "cameras", "foot_top">,
     "note": "<one line>"}

Files without it read as the default guess (the first camera 1.6 m above the ground).

Re-scaling multiplies every camera position and point by a factor about the ground plane's
point (the world origin of a solve), keeping rotations, so the ground stays where it is
(z = 0 for a solve). The measurements:

- camera height: the camera's distance above the ground plane;
- known distance: two pixels of one frame on the ground plane (each ray meets the plane), or
  two 3D points;
- known height of something standing on the ground: its foot pixel (ray meets the ground) and
  its top pixel (the point of the vertical through the foot closest to the top pixel's ray).

Pixels are footage pixels of a video frame (the frame's ``source`` when it is an integer, else
its ``frame``): (0, 0) is the top-left corner of the image, and the document's ``radial2``
distortion is removed before casting the ray.
"""
from __future__ import annotations

import copy
import math

import numpy as np

DEFAULT_CAMERA_HEIGHT = 1.6
SOURCES = ("camera_height_default", "camera_height", "known_distance", "known_height", "metric_depth")
#: Pixel references are assumed picked to within this many pixels (1 sigma); it sets their
#: reported uncertainty.
PICK_PX = 1.0
HOW_TO_FIX = ("set it with --camera-height H, --scale-distance D with --scale-pixels F,x0,y0,x1,y1, "
              "or --scale-height H with --scale-foot-top F,xf,yf,xt,yt (in Blender: Camera Solve > Set Scale)")


class ScaleError(ValueError):
    """A scale reference cannot be measured (no camera, a ray missing the ground, ...)."""


# -- what the scale is --------------------------------------------------------------------------

def default_info(height: float = DEFAULT_CAMERA_HEIGHT) -> dict:
    return {"source": "camera_height_default", "value": float(height), "uncertainty_rel": None,
            "reference": "first_camera",
            "note": f"a guess: the first camera is put {height:g} m above the ground"}


def make_info(source: str, value: float, uncertainty_rel: float | None, reference: str, note: str) -> dict:
    if source not in SOURCES:
        raise ValueError(f"unknown scale source {source!r}")
    u = None if uncertainty_rel is None or not math.isfinite(float(uncertainty_rel)) else float(uncertainty_rel)
    return {"source": source, "value": float(value), "uncertainty_rel": u, "reference": reference, "note": note}


def info_of(doc_or_stats: dict) -> dict:
    """The scale record of a cameras.json document (or its ``stats``); older files read as the
    default guess, except a known distance their legacy ``scale_source`` names."""
    stats = doc_or_stats.get("stats", doc_or_stats) if isinstance(doc_or_stats, dict) else {}
    stats = stats if isinstance(stats, dict) else {}
    rec = stats.get("scale")
    if isinstance(rec, dict) and rec.get("source") in SOURCES:
        out = default_info()
        out.update(rec)
        return out
    legacy = str(stats.get("scale_source", ""))
    if legacy.startswith("known_distance"):
        ref = legacy[len("known_distance_"):] or "unknown"
        return make_info("known_distance", float("nan"), None, ref, f"a known distance between two {ref}")
    return default_info()


def is_guess(info: dict) -> bool:
    return info.get("source", "camera_height_default") == "camera_height_default"


def describe(info: dict) -> str:
    """One line: the scale's source and uncertainty, or that it is a guess and how to fix it."""
    if is_guess(info):
        h = info.get("value") or DEFAULT_CAMERA_HEIGHT
        return f"scale is a guess (first camera {h:g} m above the ground); {HOW_TO_FIX}"
    u = info.get("uncertainty_rel")
    unc = f", +-{100 * u:.2g} %" if u is not None else ""
    return f"scale from {info.get('note') or info.get('source')}{unc}"


# -- cameras and rays ---------------------------------------------------------------------------

def frame_for_video_index(doc: dict, index: int) -> dict:
    """The registered frame showing video frame ``index``; raises :class:`ScaleError`."""
    for fr in doc["frames"]:
        src = str(fr.get("source", ""))
        vid = int(src) if src.strip().isdigit() else int(fr["frame"])
        if vid == int(index) and fr.get("registered", True):
            return fr
    raise ScaleError(f"video frame {index} has no solved camera")


def ground_of(doc: dict) -> tuple[np.ndarray, np.ndarray]:
    """The document's ground plane (point, unit normal); world z = 0 when it has none."""
    plane = doc.get("ground_plane")
    if not plane:
        return np.zeros(3), np.array([0.0, 0.0, 1.0])
    n = np.asarray(plane["normal"], np.float64)
    return np.asarray(plane["point"], np.float64), n / np.linalg.norm(n)


def _undistort(xd: float, yd: float, k1: float, k2: float) -> tuple[float, float]:
    x, y = xd, yd
    for _ in range(50):
        r2 = x * x + y * y
        s = 1.0 + k1 * r2 + k2 * r2 * r2
        nx, ny = xd / s, yd / s
        done = abs(nx - x) + abs(ny - y) < 1e-15
        x, y = nx, ny
        if done:
            break
    return x, y


def pixel_ray(frame: dict, distortion: dict | None, u: float, v: float) -> tuple[np.ndarray, np.ndarray]:
    """World origin and unit direction of the viewing ray through footage pixel ``(u, v)``."""
    d = distortion or {}
    cx, cy = frame["principal_point_px"]
    f = float(frame["focal_px"])
    x, y = _undistort((u - cx) / f, (v - cy) / f, float(d.get("k1") or 0.0), float(d.get("k2") or 0.0))
    c2w = np.asarray(frame["matrix_world"], np.float64)
    ray = c2w[:3, :3] @ np.array([x, -y, -1.0])  # OpenCV (x, y, 1) in Blender camera axes
    return c2w[:3, 3].copy(), ray / np.linalg.norm(ray)


def _check_pixel(doc: dict, u: float, v: float) -> None:
    w, h = int(doc["width"]), int(doc["height"])
    if not (math.isfinite(u) and math.isfinite(v) and 0.0 <= u <= w and 0.0 <= v <= h):
        raise ScaleError(f"pixel ({u:g}, {v:g}) lies outside the {w}x{h} frame")


def ground_point(doc: dict, index: int, u: float, v: float) -> np.ndarray:
    """Where the ray through pixel ``(u, v)`` of video frame ``index`` meets the ground plane."""
    _check_pixel(doc, u, v)
    o, d = pixel_ray(frame_for_video_index(doc, index), doc.get("distortion"), u, v)
    p0, n = ground_of(doc)
    denom = float(d @ n)
    t = float((p0 - o) @ n) / denom if abs(denom) > 1e-9 else -1.0
    if t <= 0:
        raise ScaleError(f"pixel ({u:g}, {v:g}) of frame {index} does not see the ground plane")
    return o + t * d


def camera_height(doc: dict, index: int | None = None) -> float:
    """Height above the ground of video frame ``index``'s camera (default: the first registered)."""
    if index is None:
        fr = next((f for f in doc["frames"] if f.get("registered", True)), None)
        if fr is None:
            raise ScaleError("the solve has no registered camera")
    else:
        fr = frame_for_video_index(doc, index)
    p0, n = ground_of(doc)
    h = float((np.asarray(fr["matrix_world"], np.float64)[:3, 3] - p0) @ n)
    if not h > 1e-12:
        raise ScaleError("the camera is not above the ground plane")
    return h


def ground_distance(doc: dict, index: int, p0_uv, p1_uv) -> float:
    """Distance between the ground points under two pixels of one frame."""
    a = ground_point(doc, index, *map(float, p0_uv))
    b = ground_point(doc, index, *map(float, p1_uv))
    return float(np.linalg.norm(a - b))


def height_above_ground(doc: dict, index: int, foot_uv, top_uv) -> float:
    """Height of something standing on the ground, from its foot and top pixels in one frame.

    The foot is where the foot pixel's ray meets the ground; the top is the point of the
    ground normal through the foot that comes closest to the top pixel's ray.
    """
    foot = ground_point(doc, index, *map(float, foot_uv))
    _check_pixel(doc, *map(float, top_uv))
    o, d = pixel_ray(frame_for_video_index(doc, index), doc.get("distortion"), *map(float, top_uv))
    _, n = ground_of(doc)
    # closest points of the lines foot + s n and o + t d
    w = foot - o
    b = float(n @ d)
    den = 1.0 - b * b
    if den < 1e-9:
        raise ScaleError("the top pixel's ray runs along the vertical through the foot")
    s = (b * float(d @ w) - float(n @ w)) / den
    if not s > 0:
        raise ScaleError("the top pixel is not above the foot pixel")
    return float(s)


def point_distance(a, b) -> float:
    d = float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
    if not d > 1e-12:
        raise ScaleError("the two scale points coincide")
    return d


def _pixel_spread(measure, pixels: list[float], pick_px: float) -> float | None:
    """Relative 1-sigma error of ``measure(pixels)`` for a ``pick_px`` error in each coordinate."""
    base = measure(pixels)
    var = 0.0
    for i in range(len(pixels)):
        moved = list(pixels)
        moved[i] += pick_px
        try:
            var += (measure(moved) - base) ** 2
        except ScaleError:
            return None
    return math.sqrt(var) / base


# -- measuring and applying ---------------------------------------------------------------------

def measure(doc: dict, method: str, value: float, *, frame: int | None = None, pixels=None, points=None,
            pick_px: float = PICK_PX) -> tuple[float, dict]:
    """``(factor, info)``: the factor that makes the reference measure ``value`` metres, and the
    scale record once applied. ``method``: ``camera_height`` (``frame`` optional),
    ``ground_pixels`` (``frame``, ``pixels`` = x0, y0, x1, y1), ``points`` (``points`` = two
    xyz in the current world), ``foot_top`` (``frame``, ``pixels`` = xf, yf, xt, yt).
    The recorded value is the given metres, the uncertainty that of 1 ``pick_px`` of picking error
    (pixel references; unknown otherwise)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ScaleError(f"the known size must be a positive number of metres, got {value!r}")
    unc = None
    if method == "camera_height":
        current = camera_height(doc, frame)
        which = "the first camera" if frame is None else f"the camera of frame {frame}"
        return value / current, make_info("camera_height", value, None, "camera",
                                          f"{which} {value:g} m above the ground")
    if method in ("ground_pixels", "foot_top"):
        px = [float(p) for p in pixels]
        if len(px) != 4 or frame is None:
            raise ScaleError(f"{method} needs a frame and four pixel coordinates")
        if method == "ground_pixels":
            def fn(q):
                return ground_distance(doc, frame, q[:2], q[2:])
            source, note = "known_distance", f"{value:g} m between two ground pixels of frame {frame}"
        else:
            def fn(q):
                return height_above_ground(doc, frame, q[:2], q[2:])
            source, note = "known_height", f"something {value:g} m tall standing on the ground in frame {frame}"
        current = fn(px)
        if not current > 1e-12:
            raise ScaleError(f"the {method.replace('_', ' ')} reference has no length")
        unc = _pixel_spread(fn, px, pick_px)
        return value / current, make_info(source, value, unc, method, note)
    if method in ("points", "cameras"):
        a, b = points
        current = point_distance(a, b)
        return value / current, make_info("known_distance", value, None, method,
                                          f"{value:g} m between two {method}")
    raise ScaleError(f"unknown scale method {method!r}")


def scale_about(xyz, factor: float, pivot) -> np.ndarray:
    """``pivot + factor * (xyz - pivot)`` for points ``(N, 3)``."""
    p = np.asarray(pivot, np.float64)
    return p + float(factor) * (np.asarray(xyz, np.float64).reshape(-1, 3) - p)


def scale_matrices(mats, factor: float, pivot) -> np.ndarray:
    """Camera-to-world matrices with their positions scaled about ``pivot`` (rotations kept)."""
    out = np.array(mats, np.float64).reshape(-1, 4, 4)
    out[:, :3, 3] = scale_about(out[:, :3, 3], factor, pivot)
    return out


def rescale_document(doc: dict, factor: float, info: dict) -> dict:
    """A copy of a cameras.json document scaled by ``factor`` about its ground point, with the
    scale record ``info`` (its stats' ``world_scale`` multiplied by ``factor``)."""
    if not (math.isfinite(factor) and factor > 0):
        raise ScaleError(f"scale factor must be positive, got {factor}")
    out = copy.deepcopy(doc)
    pivot, _ = ground_of(doc)
    mats = scale_matrices([f["matrix_world"] for f in doc["frames"]], factor, pivot)
    for fr, m in zip(out["frames"], mats):
        fr["matrix_world"] = m.tolist()
    stats = out.setdefault("stats", {})
    if isinstance(stats.get("world_scale"), (int, float)):
        stats["world_scale"] = float(stats["world_scale"]) * factor
    if isinstance(stats.get("points_at_infinity_radius"), (int, float)):
        stats["points_at_infinity_radius"] = float(stats["points_at_infinity_radius"]) * factor
    stats["scale"] = dict(info)
    stats["scale_source"] = info["source"]
    stats.pop("scale_note", None)
    return out
