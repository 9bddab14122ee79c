"""Novel camera paths (bpy-free): orbit, spiral, dolly, smooth interpolation through solved
cameras, and nerfstudio ``camera_path.json`` export/import.

Every path is a :class:`CameraPath`: per-frame camera-to-world matrices in the Blender
convention (camera looks down its local -Z, +Y up, world +Z up; the world of cameras.json, so
a path made from solved cameras needs no extra transform) and a per-frame focal length in
pixels for a ``width`` x ``height`` image with a centred principal point.

Interpolation through keys (solved cameras) is C1 in time and passes exactly through every
key at its frame:

* positions and log focal length: cubic Hermite segments whose tangent at a key is the
  three-point (Bessel) estimate ``(h1 d0 + h0 d1) / (h0 + h1)`` from the neighbouring
  secant slopes ``d0, d1`` over frame gaps ``h0, h1`` (one-sided at the ends). The tangent is
  shared by both segments meeting at a key, so velocity is continuous even for unevenly
  spaced keys.
* rotations: spherical cubic Bezier segments (De Casteljau with slerp, Shoemake) between
  sign-continuous unit quaternions. The inner control points ``q_i exp(+h v_i / 3)`` and
  ``q_{i+1} exp(-h v_{i+1} / 3)`` put the body-frame angular velocity ``2 v_i`` at each key
  on both of its segments, the rotational analogue of the Hermite rule above.

nerfstudio's format (``nerfstudio/cameras/camera_paths.py``, ``get_path_from_json``):
``{"camera_type": "perspective", "render_width": W, "render_height": H, "fps": F,
"seconds": S, "camera_path": [{"camera_to_world": [16 floats, row-major 4x4],
"fov": vertical degrees, "aspect": W / H}, ...]}``. nerfstudio cameras use OpenGL axes
(x right, y up, looking down -z), the same as Blender's, so matrices are written unchanged;
the focal length is ``(H / 2) / tan(fov / 2)`` and the principal point is the image centre.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import camera_file, conventions
from .atomic import atomic_write_json


class CameraPathError(ValueError):
    """A camera path or camera_path.json is invalid; the message names the input."""


@dataclass
class CameraPath:
    """An animated camera: one pose and focal length per frame, starting at ``frame_start``."""

    matrices: np.ndarray          # (N, 4, 4) camera-to-world, Blender camera axes
    focal_px: np.ndarray          # (N,) focal length in pixels (square pixels)
    width: int
    height: int
    fps: float
    frame_start: int = 1

    def __post_init__(self):
        self.matrices = np.asarray(self.matrices, dtype=np.float64)
        if self.matrices.ndim != 3 or self.matrices.shape[1:] != (4, 4) or len(self.matrices) == 0:
            raise CameraPathError(f"camera path: expected (N, 4, 4) matrices, got shape {self.matrices.shape}")
        self.focal_px = np.broadcast_to(np.asarray(self.focal_px, dtype=np.float64),
                                        (len(self.matrices),)).copy()
        if not (np.all(np.isfinite(self.matrices)) and np.all(np.isfinite(self.focal_px))):
            raise CameraPathError("camera path: matrices and focal lengths must be finite")
        if np.any(self.focal_px <= 0):
            raise CameraPathError("camera path: focal lengths must be positive")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise CameraPathError(f"camera path: image size must be positive, got {self.width}x{self.height}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise CameraPathError(f"camera path: fps must be positive, got {self.fps}")
        self.width, self.height, self.fps = int(self.width), int(self.height), float(self.fps)

    def __len__(self) -> int:
        return len(self.matrices)

    @property
    def frames(self) -> np.ndarray:
        return np.arange(len(self)) + int(self.frame_start)

    @property
    def fov_y_deg(self) -> np.ndarray:
        """Vertical field of view per frame, degrees."""
        return np.degrees(2.0 * np.arctan(0.5 * self.height / self.focal_px))


# --------------------------------------------------------------------------- quaternions
# (w, x, y, z) order, as Blender's rotation_quaternion and shared_protocol.conventions.


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], -1)


def _qconj(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def _qlog(q: np.ndarray) -> np.ndarray:
    """Unit quaternion(s) -> 3-vector ``v`` with ``q = exp(v)``: half the rotation angle times the axis."""
    w = np.clip(q[..., 0], -1.0, 1.0)
    xyz = q[..., 1:]
    s = np.linalg.norm(xyz, axis=-1)
    half = np.arctan2(s, w)
    scale = np.where(s > 1e-12, half / np.maximum(s, 1e-300), 1.0 / np.where(np.abs(w) > 0, w, 1.0))
    return xyz * scale[..., None]


def _qexp(v: np.ndarray) -> np.ndarray:
    half = np.linalg.norm(v, axis=-1)
    sinc = np.where(half > 1e-12, np.sin(half) / np.maximum(half, 1e-300), 1.0 - half * half / 6.0)
    return np.concatenate([np.cos(half)[..., None], v * sinc[..., None]], -1)


def _slerp(a: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Shortest-arc interpolation ``a exp(u log(a^-1 b))`` (a and b unit, with a.b >= 0 expected)."""
    return _qmul(a, _qexp(u[..., None] * _qlog(_qmul(_qconj(a), b))))


def _matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    return conventions.matrix_to_quaternion(R)


def _quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    return conventions.quaternion_to_matrix(q)


def _sign_continuous(q: np.ndarray) -> np.ndarray:
    return conventions.quaternion_sign_continuity(q)


def _nearest_rotation(R: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(R)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, 2] *= d[..., None]
    return u @ vt


# --------------------------------------------------------------------------- generators


def look_at(eye, target, up=(0.0, 0.0, 1.0), roll_deg: float = 0.0) -> np.ndarray:
    """Camera-to-world matrix (Blender axes) of a camera at ``eye`` looking at ``target``.

    The camera's x axis is horizontal (perpendicular to ``up``) and its y axis leans towards
    ``up``; ``roll_deg`` then turns the camera about its viewing axis (counter-clockwise as
    seen by the camera). Raises CameraPathError when the view direction is parallel to ``up``.
    """
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    back = eye - target
    dist = np.linalg.norm(back)
    if dist <= 0 or not np.isfinite(dist):
        raise CameraPathError(f"look_at: eye {eye.tolist()} and target {target.tolist()} coincide")
    back = back / dist
    right = np.cross(up, back)
    n = np.linalg.norm(right)
    if n < 1e-9:
        raise CameraPathError("look_at: view direction is parallel to the up vector")
    right /= n
    cam_up = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, cam_up, back, eye
    if roll_deg:
        c, s = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
        r = np.eye(4)
        r[:2, :2] = [[c, -s], [s, c]]
        m = m @ r
    return m


def _rotation_about(axis: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotation matrices (N, 3, 3) about the unit ``axis`` by ``angles`` (radians, right-handed)."""
    k = axis / np.linalg.norm(axis)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    s, c = np.sin(angles)[:, None, None], np.cos(angles)[:, None, None]
    return np.eye(3) + s * K + (1 - c) * (K @ K)


def _param(n_frames: int, closed: bool) -> np.ndarray:
    if n_frames < 1:
        raise CameraPathError(f"camera path: need at least one frame, got {n_frames}")
    if n_frames == 1:
        return np.zeros(1)
    return np.arange(n_frames) / (n_frames if closed else n_frames - 1)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """Ease in and out with zero velocity at both ends: ``3t^2 - 2t^3``."""
    return t * t * (3.0 - 2.0 * t)


def orbit(target, eye, n_frames: int, *, degrees: float = 360.0, axis=(0.0, 0.0, 1.0),
          focal_px: float, width: int, height: int, fps: float, frame_start: int = 1) -> CameraPath:
    """Circle ``eye`` about the line through ``target`` along ``axis`` by ``degrees`` (positive:
    counter-clockwise seen from +axis), looking at ``target`` with ``axis`` as up.

    The distance to ``target`` is constant. A whole number of turns is a closed loop: the
    last frame stops one step short of the first, so the loop repeats seamlessly.
    """
    target, eye, axis = (np.asarray(a, dtype=np.float64) for a in (target, eye, axis))
    closed = degrees != 0 and abs(math.remainder(degrees, 360.0)) < 1e-9
    angles = np.radians(degrees) * _param(n_frames, closed)
    eyes = target + (_rotation_about(axis, angles) @ (eye - target))
    mats = np.stack([look_at(e, target, axis) for e in eyes])
    return CameraPath(mats, focal_px, width, height, fps, frame_start)


def spiral(target, eye, n_frames: int, *, turns: float = 2.0, radius_scale: float = 1.0,
           rise: float = 0.0, axis=(0.0, 0.0, 1.0), focal_px: float, width: int, height: int,
           fps: float, frame_start: int = 1) -> CameraPath:
    """Go ``turns`` times round ``target`` starting at ``eye``, looking at ``target``, while the
    horizontal radius changes linearly to ``radius_scale`` times its start and the height
    along ``axis`` changes by ``rise`` (metres)."""
    target, eye, axis = (np.asarray(a, dtype=np.float64) for a in (target, eye, axis))
    axis = axis / np.linalg.norm(axis)
    if radius_scale <= 0:
        raise CameraPathError(f"spiral: radius_scale must be positive, got {radius_scale}")
    t = _param(n_frames, closed=False)
    rel = eye - target
    height0 = rel @ axis
    radial = rel - height0 * axis
    if np.linalg.norm(radial) < 1e-9:
        raise CameraPathError("spiral: eye lies on the axis through the target")
    radial_t = (_rotation_about(axis, 2 * np.pi * turns * t) @ radial) * (1 + (radius_scale - 1) * t)[:, None]
    eyes = target + radial_t + (height0 + rise * t)[:, None] * axis
    mats = np.stack([look_at(e, target, axis) for e in eyes])
    return CameraPath(mats, focal_px, width, height, fps, frame_start)


def dolly(eye, target, n_frames: int, *, distance: float, keep_target_size: bool = False,
          up=(0.0, 0.0, 1.0), focal_px: float, width: int, height: int, fps: float,
          frame_start: int = 1) -> CameraPath:
    """Move from ``eye`` towards ``target`` by ``distance`` metres (negative: away), easing in and
    out, always looking at ``target``.

    With ``keep_target_size`` the focal length follows the distance (``f * d / d0``), so the
    target keeps its size in frame while the background changes (the "dolly zoom").
    """
    eye, target = np.asarray(eye, dtype=np.float64), np.asarray(target, dtype=np.float64)
    d0 = float(np.linalg.norm(target - eye))
    if d0 <= 0:
        raise CameraPathError("dolly: eye and target coincide")
    if distance >= d0:
        raise CameraPathError(f"dolly: distance {distance} reaches the target (it is {d0:.6g} away)")
    s = _smoothstep(_param(n_frames, closed=False))
    direction = (target - eye) / d0
    eyes = eye + (distance * s)[:, None] * direction
    mats = np.stack([look_at(e, target, up) for e in eyes])
    focal = focal_px * (d0 - distance * s) / d0 if keep_target_size else np.full(n_frames, float(focal_px))
    return CameraPath(mats, focal, width, height, fps, frame_start)


# --------------------------------------------------------------------------- interpolation


def _bessel_tangents(values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Per-key tangents (d/dtime) shared by both adjacent segments; one-sided at the ends."""
    n = len(values)
    if n == 1:
        return np.zeros_like(values)
    h = np.diff(times)
    d = np.diff(values, axis=0) / h.reshape((-1,) + (1,) * (values.ndim - 1))
    m = np.empty_like(values)
    m[0], m[-1] = d[0], d[-1]
    if n > 2:
        h0 = h[:-1].reshape((-1,) + (1,) * (values.ndim - 1))
        h1 = h[1:].reshape((-1,) + (1,) * (values.ndim - 1))
        m[1:-1] = (h1 * d[:-1] + h0 * d[1:]) / (h0 + h1)
    return m


def _segments(times: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment index, local parameter in [0, 1] and segment length for query times (clamped)."""
    t = np.clip(t, times[0], times[-1])
    i = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    h = times[i + 1] - times[i]
    return i, (t - times[i]) / h, h


def hermite(values: np.ndarray, times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """C1 cubic Hermite interpolation of ``values`` (K, ...) at key ``times`` (K,), evaluated at ``t``."""
    values = np.asarray(values, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if len(values) == 1:
        return np.repeat(values, len(t), axis=0)
    m = _bessel_tangents(values, times)
    i, u, h = _segments(times, t)
    shape = (-1,) + (1,) * (values.ndim - 1)
    u, h = u.reshape(shape), h.reshape(shape)
    u2, u3 = u * u, u * u * u
    return ((2 * u3 - 3 * u2 + 1) * values[i] + (u3 - 2 * u2 + u) * h * m[i]
            + (-2 * u3 + 3 * u2) * values[i + 1] + (u3 - u2) * h * m[i + 1])


def quaternion_spline(quats: np.ndarray, times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """C1 rotation interpolation of unit quaternions (K, 4) at key ``times``, evaluated at ``t``.

    Keys are made sign-continuous first; the result passes through every key at its time.
    """
    q = np.asarray(quats, dtype=np.float64)
    q = _sign_continuous(q / np.linalg.norm(q, axis=1, keepdims=True))
    times = np.asarray(times, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if len(q) == 1:
        return np.repeat(q, len(t), axis=0)
    rel = _qlog(_qmul(_qconj(q[:-1]), q[1:]))                      # per segment, body frame
    h = np.diff(times)
    d = rel / h[:, None]
    v = np.empty((len(q), 3))
    v[0], v[-1] = d[0], d[-1]
    if len(q) > 2:
        h0, h1 = h[:-1, None], h[1:, None]
        v[1:-1] = (h1 * d[:-1] + h0 * d[1:]) / (h0 + h1)
    a = _qmul(q[:-1], _qexp(h[:, None] * v[:-1] / 3.0))
    b = _qmul(q[1:], _qexp(-h[:, None] * v[1:] / 3.0))
    i, u, _ = _segments(times, t)
    p0, p1, p2, p3 = q[i], a[i], b[i], q[i + 1]
    p01, p12, p23 = _slerp(p0, p1, u), _slerp(p1, p2, u), _slerp(p2, p3, u)
    out = _slerp(_slerp(p01, p12, u), _slerp(p12, p23, u), u)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def interpolate_poses(matrices: np.ndarray, key_frames: np.ndarray, frames: np.ndarray,
                      focal_px: np.ndarray | float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Camera-to-world matrices (and focal lengths) at ``frames`` (any real numbers) from keys.

    Positions and log focal lengths use :func:`hermite`, rotations :func:`quaternion_spline`.
    Frames outside the keys hold the first or last key.
    """
    m = np.asarray(matrices, dtype=np.float64)
    kf = np.asarray(key_frames, dtype=np.float64)
    if m.ndim != 3 or m.shape[1:] != (4, 4) or len(m) != len(kf) or len(m) == 0:
        raise CameraPathError(f"interpolate: need K matrices (K, 4, 4) and K key frames, got {m.shape} and {kf.shape}")
    if np.any(np.diff(kf) <= 0):
        raise CameraPathError("interpolate: key frames must be strictly increasing")
    f = np.atleast_1d(np.asarray(frames, dtype=np.float64))
    q = _matrix_to_quaternion(_nearest_rotation(m[:, :3, :3]))
    out = np.tile(np.eye(4), (len(f), 1, 1))
    out[:, :3, :3] = _quaternion_to_matrix(quaternion_spline(q, kf, f))
    out[:, :3, 3] = hermite(m[:, :3, 3], kf, f)
    focal = None
    if focal_px is not None:
        fk = np.broadcast_to(np.asarray(focal_px, dtype=np.float64), kf.shape)
        if np.any(fk <= 0):
            raise CameraPathError("interpolate: focal lengths must be positive")
        focal = np.exp(hermite(np.log(fk), kf, f))
    return out, focal


def pick_keys(n: int, every: int) -> np.ndarray:
    """Indices of every ``every``-th of ``n`` cameras, always including the first and the last."""
    if every < 1:
        raise CameraPathError(f"key spacing must be >= 1, got {every}")
    idx = np.arange(0, n, every)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def through_cameras(matrices: np.ndarray, focal_px, key_frames, *, width: int, height: int, fps: float,
                    every: int = 1, frames=None, frame_start: int | None = None) -> CameraPath:
    """A smooth path through solved cameras (``matrices`` at ``key_frames``), using every
    ``every``-th of them as keys; one pose per integer frame from the first to the last key
    (or at ``frames``). The path starts at ``frame_start`` (default: the first frame)."""
    kf = np.asarray(key_frames, dtype=np.float64)
    keys = pick_keys(len(kf), every)
    f = np.arange(kf[0], kf[-1] + 1) if frames is None else np.asarray(frames, dtype=np.float64)
    fk = np.broadcast_to(np.asarray(focal_px, dtype=np.float64), kf.shape)
    mats, focal = interpolate_poses(np.asarray(matrices)[keys], kf[keys], f, fk[keys])
    start = int(round(f[0])) if frame_start is None else int(frame_start)
    return CameraPath(mats, focal, width, height, fps, start)


def to_cameras_document(path: CameraPath, ground_plane: dict | None = None) -> dict:
    """The path as a cameras.json document (the contract the backend's render service and the
    camera import read): one registered frame per path frame, ``source`` = the Blender frame,
    centred principal point, no distortion."""
    return camera_file.make_document(
        path.width, path.height, path.fps, path.matrices, path.focal_px,
        (path.width / 2.0, path.height / 2.0), sources=[str(f) for f in path.frames],
        ground_plane=ground_plane, stats={"camera_path": True, "frame_start": int(path.frame_start)})


def through_solved(doc: dict, *, every: int = 1, frame_offset: int = 1) -> CameraPath:
    """A smooth path through the registered cameras of a cameras.json document (scene frame =
    ``frame_offset`` + cameras.json frame, as the camera import keys them)."""
    doc = camera_file.validate(doc)
    rows = sorted((fr for fr in doc["frames"] if fr.get("registered", True)), key=lambda fr: fr["frame"])
    if not rows:
        raise CameraPathError("cameras.json: no registered frames")
    frames = np.array([fr["frame"] for fr in rows], dtype=np.float64) + frame_offset
    mats = np.array([fr["matrix_world"] for fr in rows], dtype=np.float64)
    focal = np.array([fr["focal_px"] for fr in rows], dtype=np.float64)
    fps = float(doc.get("fps") or 24.0)
    return through_cameras(mats, focal, frames, width=doc["width"], height=doc["height"], fps=fps, every=every)


# --------------------------------------------------------------------------- nerfstudio


def to_nerfstudio(path: CameraPath) -> dict:
    """The nerfstudio camera_path.json document of ``path``."""
    aspect = path.width / path.height
    cams = [{"camera_to_world": [float(x) for x in m.reshape(16)], "fov": float(fov), "aspect": aspect}
            for m, fov in zip(path.matrices, path.fov_y_deg)]
    return {"camera_type": "perspective", "render_width": path.width, "render_height": path.height,
            "fps": path.fps, "seconds": len(path) / path.fps, "camera_path": cams}


def from_nerfstudio(doc: dict, source: str = "camera_path.json", frame_start: int = 1) -> CameraPath:
    """Parse a nerfstudio camera path document; errors name ``source`` and the field."""
    def fail(why: str) -> CameraPathError:
        return CameraPathError(f"{source}: {why}")

    if not isinstance(doc, dict):
        raise fail("expected a JSON object")
    kind = doc.get("camera_type", "perspective")
    if kind != "perspective":
        raise fail(f"camera_type {kind!r} is not supported (only 'perspective')")
    try:
        width, height = int(doc["render_width"]), int(doc["render_height"])
    except (KeyError, TypeError, ValueError):
        raise fail("render_width and render_height must be integers") from None
    cams = doc.get("camera_path")
    if not isinstance(cams, list) or not cams:
        raise fail("camera_path must be a non-empty list")
    mats, fovs = [], []
    for k, cam in enumerate(cams):
        try:
            m = np.asarray(cam["camera_to_world"], dtype=np.float64)
            fov = float(cam["fov"])
        except (KeyError, TypeError, ValueError):
            raise fail(f"camera_path[{k}] needs camera_to_world (16 numbers) and fov") from None
        if m.size != 16 or not np.all(np.isfinite(m)):
            raise fail(f"camera_path[{k}].camera_to_world must hold 16 finite numbers")
        if not 0.0 < fov < 180.0:
            raise fail(f"camera_path[{k}].fov must be in (0, 180) degrees, got {fov}")
        mats.append(m.reshape(4, 4))
        fovs.append(fov)
    fps = doc.get("fps")
    if fps is None:
        seconds = doc.get("seconds")
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            raise fail("needs fps or a positive seconds")
        fps = len(cams) / float(seconds)
    focal = 0.5 * height / np.tan(np.radians(np.asarray(fovs)) / 2.0)
    try:
        return CameraPath(np.stack(mats), focal, width, height, float(fps), frame_start)
    except CameraPathError as e:
        raise fail(str(e)) from None


def write_nerfstudio(path: CameraPath, file: str | Path) -> Path:
    """Write ``path`` as nerfstudio camera_path.json (atomically: no half-written file)."""
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(file, to_nerfstudio(path))


def read_nerfstudio(file: str | Path, frame_start: int = 1) -> CameraPath:
    """Read a nerfstudio camera_path.json; errors name the file."""
    file = Path(file)
    try:
        doc = json.loads(file.read_text())
    except FileNotFoundError:
        raise CameraPathError(f"{file}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CameraPathError(f"{file}: not valid JSON ({e})") from None
    return from_nerfstudio(doc, str(file), frame_start)
