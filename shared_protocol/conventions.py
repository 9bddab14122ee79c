"""Coordinate conventions: OpenCV and Blender cameras, world up axes, quaternions.

Pure numpy (no bpy, no OpenCV), so it runs inside Blender's Python as well as in the backend.
The conventions are written down in docs/conventions.md; in short:

* OpenCV camera axes: +x right, +y down, +z forward (the camera looks down +z).
  Blender camera axes: +x right, +y up, the camera looks down -z.
  The two differ by ``diag(1, -1, -1)`` (:data:`OPENCV_TO_BLENDER_CAMERA`).
* Poses are 4x4 homogeneous matrices. ``c2w`` (camera-to-world, Blender's ``matrix_world``)
  maps camera coordinates to world coordinates; ``w2c`` is its inverse (OpenCV's ``[R|t]``).
* Pixels: (0, 0) is the top-left corner of the top-left pixel, pixel centres lie at +0.5,
  u grows to the right and v grows downward (COLMAP's convention). ``cx``, ``cy`` are in
  these coordinates; Blender's ``shift_y`` grows upward.
* Blender cameras are described by :class:`BlenderCamera` (lens, sensor, fit, shift,
  resolution and the scene's pixel aspect); :func:`intrinsics_to_blender` and
  :func:`blender_to_intrinsics` convert exactly, following Blender's view-plane rules
  (``BKE_camera_params_compute_viewplane``), which :func:`blender_viewplane` reimplements.
* Quaternions are ``(w, x, y, z)``, Blender's ``rotation_quaternion`` order.

All functions take float arrays and accept leading batch dimensions where noted.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

__all__ = [
    "OPENCV_TO_BLENDER_CAMERA",
    "Y_UP_TO_Z_UP",
    "Z_UP_TO_Y_UP",
    "SENSOR_FITS",
    "Intrinsics",
    "BlenderCamera",
    "make_pose",
    "invert_pose",
    "c2w_opencv_to_blender",
    "c2w_blender_to_opencv",
    "rotation_to_z_up",
    "transform_poses",
    "transform_points",
    "intrinsics_to_blender",
    "blender_to_intrinsics",
    "resolved_sensor_fit",
    "blender_viewplane",
    "project_opencv",
    "project_blender",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "quaternion_sign_continuity",
]

SensorFit = Literal["AUTO", "HORIZONTAL", "VERTICAL"]
SENSOR_FITS: tuple[str, ...] = ("AUTO", "HORIZONTAL", "VERTICAL")

OPENCV_TO_BLENDER_CAMERA: np.ndarray = np.diag([1.0, -1.0, -1.0])
"""Maps OpenCV camera coordinates to Blender camera coordinates (and back: it is its own inverse)."""

Y_UP_TO_Z_UP: np.ndarray = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""Rotation taking a +Y-up world (glTF, many SfM tools) to a +Z-up world (Blender): +90 deg about X.

(x, y, z) -> (x, -z, y): +Y becomes +Z and +Z (glTF's "towards the viewer") becomes -Y. This is
the same axis change Blender's glTF importer applies.
"""

Z_UP_TO_Y_UP: np.ndarray = Y_UP_TO_Z_UP.T.copy()
"""Inverse of :data:`Y_UP_TO_Z_UP`."""

_FLIP4 = np.diag([1.0, -1.0, -1.0, 1.0])


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels, OpenCV/COLMAP convention (see module docstring).

    ``width`` and ``height`` are the image size in pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def K(self) -> np.ndarray:
        """The 3x3 calibration matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_K(cls, K: np.ndarray, width: int, height: int) -> "Intrinsics":
        """Build from a 3x3 calibration matrix (skew must be zero)."""
        K = np.asarray(K, dtype=float)
        if K.shape != (3, 3):
            raise ValueError(f"K: expected a 3x3 matrix, got shape {K.shape}")
        if abs(K[0, 1]) > 1e-9 * abs(K[0, 0]) or np.any(K[2] != (0.0, 0.0, 1.0)) or K[1, 0] != 0.0:
            raise ValueError("K: expected [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew)")
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height))


@dataclass(frozen=True)
class BlenderCamera:
    """The Blender settings that define a perspective camera's projection.

    ``lens``, ``sensor_width``, ``sensor_height`` (mm), ``sensor_fit``, ``shift_x``, ``shift_y``
    are ``bpy.types.Camera`` properties; ``resolution_x``, ``resolution_y``, ``pixel_aspect_x``,
    ``pixel_aspect_y`` are ``scene.render`` properties (with ``resolution_percentage = 100``).
    """

    lens: float
    sensor_width: float
    sensor_height: float
    sensor_fit: str
    shift_x: float
    shift_y: float
    resolution_x: int
    resolution_y: int
    pixel_aspect_x: float = 1.0
    pixel_aspect_y: float = 1.0

    def to_dict(self) -> dict:
        """JSON-serialisable dict of the fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BlenderCamera":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        extra = set(d) - set(cls.__dataclass_fields__)
        if extra:
            raise ValueError(f"BlenderCamera: unknown field(s) {sorted(extra)}")
        return cls(**d)


# --------------------------------------------------------------------------- poses


def make_pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Stack rotation(s) ``R`` (..., 3, 3) and translation(s) ``t`` (..., 3) into (..., 4, 4)."""
    R = np.asarray(R, dtype=float)
    t = np.asarray(t, dtype=float)
    T = np.zeros(R.shape[:-2] + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def invert_pose(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid pose(s) (..., 4, 4): turns camera-to-world into world-to-camera and back.

    Uses ``[R|t]^-1 = [R^T | -R^T t]``; ``R`` must be a rotation.
    """
    T = np.asarray(T, dtype=float)
    _check_shape(T, (4, 4), "pose")
    Rt = np.swapaxes(T[..., :3, :3], -1, -2)
    return make_pose(Rt, -np.einsum("...ij,...j->...i", Rt, T[..., :3, 3]))


def c2w_opencv_to_blender(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world pose(s) (..., 4, 4) with OpenCV camera axes -> Blender camera axes.

    ``c2w_blender = c2w_opencv @ diag(1, -1, -1, 1)``: the camera's y and z axes flip, its
    centre and the world frame are unchanged. The result is Blender's ``matrix_world``.
    """
    c2w = np.asarray(c2w, dtype=float)
    _check_shape(c2w, (4, 4), "c2w")
    return c2w @ _FLIP4


def c2w_blender_to_opencv(c2w: np.ndarray) -> np.ndarray:
    """Inverse of :func:`c2w_opencv_to_blender` (the same flip; it is an involution)."""
    return c2w_opencv_to_blender(c2w)


def rotation_to_z_up(up: np.ndarray) -> np.ndarray:
    """The smallest rotation ``R`` (3x3) with ``R @ up / |up| == (0, 0, 1)``.

    It rotates about ``up x Z``; for ``up`` pointing exactly down (-Z) it is 180 deg about +X.
    ``rotation_to_z_up((0, 1, 0))`` equals :data:`Y_UP_TO_Z_UP`.
    """
    up = np.asarray(up, dtype=float).reshape(-1)
    if up.shape != (3,) or not np.all(np.isfinite(up)):
        raise ValueError(f"up: expected a finite 3-vector, got {up!r}")
    n = np.linalg.norm(up)
    if n == 0.0:
        raise ValueError("up: zero vector has no direction")
    a = up / n
    v = np.array([a[1], -a[0], 0.0])  # a x Z, exact
    s = float(np.hypot(a[0], a[1]))  # sin(angle)
    if s == 0.0:
        return np.eye(3) if a[2] > 0.0 else np.diag([1.0, -1.0, -1.0])
    k = v / s
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + s * kx + (1.0 - float(a[2])) * (kx @ kx)


def transform_poses(world_from_old: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Re-express camera-to-world pose(s) (..., 4, 4) in a new world frame.

    ``world_from_old`` is a rotation (3x3) or a rigid transform (4x4) mapping old world
    coordinates to new ones (e.g. :data:`Y_UP_TO_Z_UP` or ``rotation_to_z_up(up)``).
    The camera axes convention is unchanged. For world-to-camera poses use
    ``invert_pose(transform_poses(M, invert_pose(w2c)))``.
    """
    M = _as_rigid4(world_from_old, "world_from_old")
    c2w = np.asarray(c2w, dtype=float)
    _check_shape(c2w, (4, 4), "c2w")
    return M @ c2w


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3x3 or 4x4 transform to points (..., 3)."""
    T = np.asarray(T, dtype=float)
    p = np.asarray(points, dtype=float)
    if p.shape[-1] != 3:
        raise ValueError(f"points: expected shape (..., 3), got {p.shape}")
    if T.shape == (3, 3):
        return p @ T.T
    if T.shape == (4, 4):
        return p @ T[:3, :3].T + T[:3, 3]
    raise ValueError(f"T: expected a 3x3 or 4x4 matrix, got shape {T.shape}")


# --------------------------------------------------------------------------- intrinsics


def resolved_sensor_fit(sensor_fit: str, width: float, height: float) -> str:
    """Blender's ``BKE_camera_sensor_fit``: AUTO becomes HORIZONTAL when ``width >= height``.

    ``width``/``height`` are the aspect-corrected image extents
    (``resolution_x * pixel_aspect_x``, ``resolution_y * pixel_aspect_y``).
    """
    if sensor_fit not in SENSOR_FITS:
        raise ValueError(f"sensor_fit: expected one of {SENSOR_FITS}, got {sensor_fit!r}")
    if sensor_fit == "AUTO":
        return "HORIZONTAL" if width >= height else "VERTICAL"
    return sensor_fit


def _viewfac(cam: BlenderCamera) -> tuple[float, float, float]:
    """(viewfac, ycor, fitted sensor size in mm), as in ``BKE_camera_params_compute_viewplane``."""
    ycor = cam.pixel_aspect_y / cam.pixel_aspect_x
    fit = resolved_sensor_fit(
        cam.sensor_fit,
        cam.resolution_x * cam.pixel_aspect_x,
        cam.resolution_y * cam.pixel_aspect_y,
    )
    viewfac = float(cam.resolution_x) if fit == "HORIZONTAL" else ycor * cam.resolution_y
    sensor = cam.sensor_height if cam.sensor_fit == "VERTICAL" else cam.sensor_width
    return viewfac, ycor, sensor


def intrinsics_to_blender(
    intrinsics: Intrinsics, sensor_fit: SensorFit = "AUTO", sensor_size_mm: float = 36.0
) -> BlenderCamera:
    """Blender camera + render settings that reproduce the pinhole ``intrinsics`` exactly.

    ``sensor_size_mm`` is the sensor size Blender fits: ``sensor_width`` for AUTO (applied to
    the larger aspect-corrected image dimension) and HORIZONTAL, ``sensor_height`` for VERTICAL.
    The other sensor property is set to the physical extent of the other axis (for AUTO with a
    portrait image both hold the vertical extent), so switching AUTO to the explicit fit it
    resolves to keeps the framing. ``fx != fy`` is expressed through the scene's pixel aspect:
    ``pixel_aspect_y / pixel_aspect_x = fx / fy`` with the smaller of the two equal to 1
    (Blender requires both >= 1). Formulas: docs/conventions.md.
    """
    fx, fy, cx, cy = (float(v) for v in (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy))
    W, H = intrinsics.width, intrinsics.height
    _check_intrinsics(fx, fy, cx, cy, W, H)
    s = float(sensor_size_mm)
    if not (math.isfinite(s) and s > 0.0):
        raise ValueError(f"sensor_size_mm: expected a positive size, got {sensor_size_mm!r}")
    ycor = fx / fy
    if not 1.0 / 200.0 <= ycor <= 200.0:
        raise ValueError(f"intrinsics: fx/fy = {ycor:g} is outside Blender's pixel aspect range [1/200, 200]")
    aspx, aspy = (1.0, ycor) if ycor >= 1.0 else (1.0 / ycor, 1.0)
    fit = resolved_sensor_fit(sensor_fit, W * aspx, H * aspy)
    viewfac = float(W) if fit == "HORIZONTAL" else ycor * H
    x_over_y = (W * aspx) / (H * aspy)  # physical sensor extent ratio, x : y
    if sensor_fit == "VERTICAL":
        sensor_w, sensor_h = s * x_over_y, s
    elif sensor_fit == "HORIZONTAL" or fit == "HORIZONTAL":
        sensor_w, sensor_h = s, s / x_over_y
    else:  # AUTO resolved to vertical: sensor_width applies to the image height
        sensor_w, sensor_h = s, s
    lens = fx * s / viewfac
    if lens < 1.0:
        raise ValueError(
            f"intrinsics: lens would be {lens:g} mm, below Blender's 1 mm minimum; use a smaller sensor_size_mm"
        )
    return BlenderCamera(
        lens=lens,
        sensor_width=sensor_w,
        sensor_height=sensor_h,
        sensor_fit=sensor_fit,
        shift_x=(0.5 * W - cx) / viewfac,
        shift_y=(cy - 0.5 * H) * ycor / viewfac,
        resolution_x=int(W),
        resolution_y=int(H),
        pixel_aspect_x=aspx,
        pixel_aspect_y=aspy,
    )


def blender_to_intrinsics(cam: BlenderCamera) -> Intrinsics:
    """Pinhole intrinsics of a Blender camera (inverse of :func:`intrinsics_to_blender`).

    ``fx = lens * viewfac / sensor``, ``fy = fx * pixel_aspect_x / pixel_aspect_y``,
    ``cx = W/2 - shift_x * viewfac``, ``cy = H/2 + shift_y * viewfac / ycor`` where
    ``viewfac`` is ``W`` (horizontal fit) or ``ycor * H`` (vertical fit) and
    ``ycor = pixel_aspect_y / pixel_aspect_x``.
    """
    _check_blender_camera(cam)
    viewfac, ycor, sensor = _viewfac(cam)
    fx = cam.lens * viewfac / sensor
    return Intrinsics(
        fx=fx,
        fy=fx / ycor,
        cx=0.5 * cam.resolution_x - cam.shift_x * viewfac,
        cy=0.5 * cam.resolution_y + cam.shift_y * viewfac / ycor,
        width=int(cam.resolution_x),
        height=int(cam.resolution_y),
    )


def blender_viewplane(cam: BlenderCamera) -> tuple[float, float, float, float]:
    """The camera's view plane at unit distance: ``(xmin, xmax, ymin, ymax)``.

    Camera-local coordinates (x right, y up) of the image rectangle's edges on the plane one
    unit in front of the camera (z = -1), computed the way Blender's
    ``BKE_camera_params_compute_viewplane`` does (lens, sensor, sensor fit, shift, pixel aspect).
    """
    _check_blender_camera(cam)
    viewfac, ycor, sensor = _viewfac(cam)
    pixsize = sensor / cam.lens / viewfac
    W, H = float(cam.resolution_x), float(cam.resolution_y)
    dx, dy = cam.shift_x * viewfac, cam.shift_y * viewfac
    return (
        (-0.5 * W + dx) * pixsize,
        (0.5 * W + dx) * pixsize,
        (-0.5 * ycor * H + dy) * pixsize,
        (0.5 * ycor * H + dy) * pixsize,
    )


# --------------------------------------------------------------------------- projection


def project_opencv(points: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points (N, 3) through an OpenCV camera.

    ``w2c`` is the 4x4 world-to-camera pose with OpenCV axes. Returns ``(uv, depth)``: pixel
    coordinates (N, 2) in the top-left-corner convention and the camera-space depth ``z``
    (N,), positive in front of the camera (points with ``depth <= 0`` get meaningless uv).
    """
    p = transform_points(_as_rigid4(w2c, "w2c"), np.atleast_2d(points))
    K = np.asarray(K, dtype=float)
    _check_shape(K, (3, 3), "K")
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = p @ K.T
        uv = uvw[:, :2] / uvw[:, 2:3]
    return uv, z


def project_blender(
    points: np.ndarray, cam: BlenderCamera, matrix_world: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Project world points (N, 3) the way Blender renders them through ``cam``.

    ``matrix_world`` is the camera object's 4x4 world matrix; like Blender, its scale is
    removed (each axis column normalised) before inverting it. Points are intersected with
    :func:`blender_viewplane` and the view plane is mapped onto the ``resolution_x`` x
    ``resolution_y`` image. Returns ``(uv, depth)`` in the same pixel convention as
    :func:`project_opencv` (top-left origin, v down) and depth ``-z_camera`` (positive in front).
    """
    M = np.asarray(matrix_world, dtype=float)
    _check_shape(M, (4, 4), "matrix_world")
    M = M.copy()
    M[:3, :3] = M[:3, :3] / np.linalg.norm(M[:3, :3], axis=0, keepdims=True)
    p = transform_points(np.linalg.inv(M), np.atleast_2d(points))
    depth = -p[:, 2]
    xmin, xmax, ymin, ymax = blender_viewplane(cam)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = p[:, 0] / depth
        y = p[:, 1] / depth
    u = (x - xmin) / (xmax - xmin) * cam.resolution_x
    v = (ymax - y) / (ymax - ymin) * cam.resolution_y
    return np.stack([u, v], axis=-1), depth


# --------------------------------------------------------------------------- quaternions


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation matrix/matrices (..., 3, 3) -> unit quaternion(s) (..., 4) as (w, x, y, z), w >= 0.

    Shepperd's method (branch on the largest of trace and diagonal), stable for all rotations.
    At exactly 180 deg (w == 0) the sign is the one the method yields.
    """
    R = np.asarray(R, dtype=float)
    _check_shape(R, (3, 3), "R")
    m00, m01, m02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    m10, m11, m12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    m20, m21, m22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    tr = m00 + m11 + m22
    cand = np.stack(
        [
            np.stack([1.0 + tr, m21 - m12, m02 - m20, m10 - m01], -1),
            np.stack([m21 - m12, 1.0 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
            np.stack([m02 - m20, m01 + m10, 1.0 - m00 + m11 - m22, m12 + m21], -1),
            np.stack([m10 - m01, m02 + m20, m12 + m21, 1.0 - m00 - m11 + m22], -1),
        ],
        -2,
    )  # each row is 4*q*q_k for k = w, x, y, z
    k = np.argmax(np.stack([tr, m00, m11, m22], -1), axis=-1)
    q = np.take_along_axis(cand, k[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0.0, -q, q)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternion(s) (..., 4) as (w, x, y, z) -> rotation matrices (..., 3, 3); q is normalised first."""
    q = np.asarray(q, dtype=float)
    if q.shape[-1] != 4:
        raise ValueError(f"q: expected shape (..., 4), got {q.shape}")
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(n == 0.0) or not np.all(np.isfinite(q)):
        raise ValueError("q: quaternions must be finite and non-zero")
    w, x, y, z = np.moveaxis(q / n, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def quaternion_sign_continuity(q: np.ndarray) -> np.ndarray:
    """Flip signs along a sequence (N, 4) so consecutive quaternions have a non-negative dot.

    q and -q are the same rotation; keyframing them without this makes Blender interpolate the
    long way round. The first quaternion keeps its sign.
    """
    q = np.asarray(q, dtype=float)
    if q.ndim != 2 or q.shape[1] != 4:
        raise ValueError(f"q: expected shape (N, 4), got {q.shape}")
    if len(q) < 2:
        return q.copy()
    step = np.where(np.einsum("ij,ij->i", q[1:], q[:-1]) < 0.0, -1.0, 1.0)
    sign = np.concatenate([[1.0], np.cumprod(step)])
    return q * sign[:, None]


# --------------------------------------------------------------------------- validation


def _check_shape(a: np.ndarray, tail: tuple[int, ...], name: str) -> None:
    if a.shape[-len(tail):] != tail or a.ndim < len(tail):
        raise ValueError(f"{name}: expected shape (..., {', '.join(map(str, tail))}), got {a.shape}")


def _as_rigid4(T: np.ndarray, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=float)
    if T.shape == (3, 3):
        T = make_pose(T, np.zeros(3))
    if T.shape != (4, 4):
        raise ValueError(f"{name}: expected a 3x3 rotation or a 4x4 rigid transform, got shape {T.shape}")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        raise ValueError(f"{name}: the 3x3 part is not a rotation (scale, shear or reflection)")
    return T


def _check_intrinsics(fx: float, fy: float, cx: float, cy: float, W: int, H: int) -> None:
    if not all(math.isfinite(v) for v in (fx, fy, cx, cy)):
        raise ValueError(f"intrinsics: fx, fy, cx, cy must be finite, got {(fx, fy, cx, cy)}")
    if fx <= 0.0 or fy <= 0.0:
        raise ValueError(f"intrinsics: focal lengths must be positive, got fx={fx}, fy={fy}")
    if int(W) != W or int(H) != H or W <= 0 or H <= 0:
        raise ValueError(f"intrinsics: width and height must be positive integers, got {W}x{H}")


def _check_blender_camera(cam: BlenderCamera) -> None:
    resolved_sensor_fit(cam.sensor_fit, 1.0, 1.0)
    for name in ("lens", "sensor_width", "sensor_height", "pixel_aspect_x", "pixel_aspect_y"):
        v = getattr(cam, name)
        if not (math.isfinite(v) and v > 0.0):
            raise ValueError(f"BlenderCamera.{name}: expected a positive number, got {v!r}")
    if cam.resolution_x <= 0 or cam.resolution_y <= 0:
        raise ValueError(f"BlenderCamera: resolution must be positive, got {cam.resolution_x}x{cam.resolution_y}")
