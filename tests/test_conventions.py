"""Tests for shared_protocol.conventions.

Property-based round trips (hypothesis), analytic cases derived by hand, independent references
(OpenCV's projectPoints, scipy's Rotation), the real Herz-Jesus ground-truth cameras, and real
Blender (bpy 5.0.1 in a subprocess): ``world_to_camera_view`` and a Cycles render.
"""
from __future__ import annotations

import json
import math
import os
import sys
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared_protocol import conventions as cv
from conftest import SHARED_DATA, needs_shared_data

HERZ = SHARED_DATA / "herz-jesus-p8"

FAST = settings(max_examples=60, deadline=None)


# --------------------------------------------------------------------------- strategies

finite = dict(allow_nan=False, allow_infinity=False)


@st.composite
def rotations(draw) -> np.ndarray:
    """Uniform-ish random rotation from a random non-degenerate quaternion (Rodrigues formula)."""
    q = np.array(draw(st.tuples(*[st.floats(-1.0, 1.0, **finite)] * 4)))
    if np.linalg.norm(q) < 0.1:
        q = np.array([1.0, 0.0, 0.0, 0.0])
    w, x, y, z = q / np.linalg.norm(q)
    # Independent of the module: the standard unit-quaternion rotation matrix.
    return np.array([
        [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z],
    ])


translations = st.tuples(*[st.floats(-50.0, 50.0, **finite)] * 3).map(np.array)


@st.composite
def intrinsics(draw) -> cv.Intrinsics:
    """Landscape, portrait and square images; fx != fy; principal points off centre (even outside)."""
    W = draw(st.integers(16, 4096))
    H = draw(st.integers(16, 4096))
    fx = draw(st.floats(0.3, 4.0)) * max(W, H)
    fy = fx * draw(st.one_of(st.just(1.0), st.floats(0.5, 2.0)))
    cx = draw(st.floats(-0.25, 1.25)) * W
    cy = draw(st.floats(-0.25, 1.25)) * H
    return cv.Intrinsics(fx, fy, cx, cy, W, H)


fits = st.sampled_from(cv.SENSOR_FITS)
sensor_sizes = st.floats(10.0, 100.0)  # with fx >= 0.3 max(W, H): lens >= 3 mm (Blender: >= 1)


def points_in_front(K: np.ndarray, c2w_opencv: np.ndarray, W: int, H: int, rng: np.random.Generator,
                    n: int = 50, depth: tuple[float, float] = (0.1, 100.0)):
    """World points whose images lie in (and a bit beyond) the image, at log-uniform depths."""
    uv = rng.uniform(-0.5, 1.5, size=(n, 2)) * [W, H]
    z = np.exp(rng.uniform(np.log(depth[0]), np.log(depth[1]), size=n))
    rays = np.linalg.solve(K, np.c_[uv, np.ones(n)].T).T
    return cv.transform_points(c2w_opencv, rays * z[:, None]), uv


# --------------------------------------------------------------------------- axes and poses


def test_opencv_and_blender_camera_axes_analytic():
    # A camera at (1, 2, 3) whose OpenCV axes equal the world axes: it looks down world +z,
    # its image "down" is world +y.
    c2w_cv = cv.make_pose(np.eye(3), [1.0, 2.0, 3.0])
    mw = cv.c2w_opencv_to_blender(c2w_cv)
    # Blender's camera looks down its local -Z: that must be world +z; its local +Y (image up) is world -y.
    np.testing.assert_array_equal(mw[:3, 2], [0.0, 0.0, -1.0])
    np.testing.assert_array_equal(mw[:3, 1], [0.0, -1.0, 0.0])
    np.testing.assert_array_equal(mw[:3, 0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(mw[:3, 3], [1.0, 2.0, 3.0])
    # A point 5 units ahead and 1 "down" in OpenCV terms: in Blender camera space it is at (0, -1, -5).
    p_world = np.array([1.0, 3.0, 8.0])
    p_bl = cv.transform_points(cv.invert_pose(mw), p_world)
    np.testing.assert_allclose(p_bl, [0.0, -1.0, -5.0], atol=1e-15)
    np.testing.assert_allclose(cv.OPENCV_TO_BLENDER_CAMERA @ [0.0, 1.0, 5.0], [0.0, -1.0, -5.0])


@FAST
@given(rotations(), translations)
def test_pose_round_trips(R, t):
    c2w = cv.make_pose(R, t)
    w2c = cv.invert_pose(c2w)
    np.testing.assert_allclose(w2c @ c2w, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(cv.invert_pose(w2c), c2w, atol=1e-12)
    mw = cv.c2w_opencv_to_blender(c2w)
    np.testing.assert_allclose(cv.c2w_blender_to_opencv(mw), c2w, atol=0)
    # The camera centre does not move, the viewing direction is the same world vector.
    np.testing.assert_array_equal(mw[:3, 3], c2w[:3, 3])
    np.testing.assert_allclose(-mw[:3, 2], c2w[:3, 2], atol=0)
    assert np.isclose(np.linalg.det(mw[:3, :3]), 1.0)


def test_batched_poses_match_single():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(7, 4))
    T = cv.make_pose(cv.quaternion_to_matrix(q), rng.normal(size=(7, 3)))
    Ti = cv.invert_pose(T)
    for k in range(7):
        np.testing.assert_allclose(Ti[k], np.linalg.inv(T[k]), atol=1e-12)
        np.testing.assert_allclose(cv.c2w_opencv_to_blender(T)[k], cv.c2w_opencv_to_blender(T[k]))


# --------------------------------------------------------------------------- world up axis


def test_y_up_to_z_up_analytic():
    # glTF: +Y up, +Z towards the viewer, +X right. Blender: +Z up, -Y towards the viewer (front view).
    np.testing.assert_array_equal(cv.Y_UP_TO_Z_UP @ [0, 1, 0], [0, 0, 1])
    np.testing.assert_array_equal(cv.Y_UP_TO_Z_UP @ [0, 0, 1], [0, -1, 0])
    np.testing.assert_array_equal(cv.Y_UP_TO_Z_UP @ [1, 0, 0], [1, 0, 0])
    np.testing.assert_allclose(cv.rotation_to_z_up([0, 1, 0]), cv.Y_UP_TO_Z_UP, atol=1e-15)
    np.testing.assert_array_equal(cv.Z_UP_TO_Y_UP @ cv.Y_UP_TO_Z_UP, np.eye(3))
    np.testing.assert_array_equal(cv.rotation_to_z_up([0, 0, 2.5]), np.eye(3))
    np.testing.assert_array_equal(cv.rotation_to_z_up([0, 0, -1]), np.diag([1.0, -1.0, -1.0]))


@FAST
@given(st.tuples(*[st.floats(-10.0, 10.0, **finite)] * 3).map(np.array).filter(lambda v: np.linalg.norm(v) > 1e-3))
def test_rotation_to_z_up_properties(up):
    R = cv.rotation_to_z_up(up)
    a = up / np.linalg.norm(up)
    np.testing.assert_allclose(R @ a, [0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(R), 1.0)
    # Smallest rotation: its angle equals the angle between up and +Z.
    angle = math.acos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))
    assert angle == pytest.approx(math.acos(np.clip(a[2], -1.0, 1.0)), abs=1e-6)


@FAST
@given(rotations(), translations, rotations(), translations)
def test_transform_poses_preserves_images(R, t, Rw, tw):
    """Moving the world and the cameras together leaves every image unchanged."""
    K = np.array([[800.0, 0, 320], [0, 780.0, 250], [0, 0, 1]])
    c2w = cv.make_pose(R, t)
    M = cv.make_pose(Rw, tw)
    pts, uv_expected = points_in_front(K, c2w, 640, 480, np.random.default_rng(1))
    uv0, _ = cv.project_opencv(pts, K, cv.invert_pose(c2w))
    uv1, z1 = cv.project_opencv(cv.transform_points(M, pts), K, cv.invert_pose(cv.transform_poses(M, c2w)))
    np.testing.assert_allclose(uv0, uv_expected, atol=1e-6)
    np.testing.assert_allclose(uv1, uv0, atol=1e-6)
    assert np.all(z1 > 0)


def test_transform_poses_rejects_scale():
    with pytest.raises(ValueError, match="world_from_old.*not a rotation"):
        cv.transform_poses(2.0 * np.eye(3), np.eye(4))


# --------------------------------------------------------------------------- intrinsics <-> Blender


def test_intrinsics_to_blender_hand_computed():
    # 1920x1080, fx = fy = 1000, principal point 40 px right of and 40 px above the centre.
    # Landscape + AUTO: sensor_width (36) spans the width, viewfac = 1920:
    #   lens = 1000 * 36 / 1920 = 18.75; shift_x = (960 - 1000) / 1920; shift_y = (500 - 540) / 1920.
    cam = cv.intrinsics_to_blender(cv.Intrinsics(1000.0, 1000.0, 1000.0, 500.0, 1920, 1080))
    assert cam.lens == pytest.approx(18.75, rel=1e-15)
    assert cam.shift_x == pytest.approx(-40.0 / 1920, rel=1e-15)
    assert cam.shift_y == pytest.approx(-40.0 / 1920, rel=1e-15)
    assert (cam.sensor_width, cam.sensor_height) == pytest.approx((36.0, 20.25))
    assert (cam.pixel_aspect_x, cam.pixel_aspect_y) == (1.0, 1.0)
    # Portrait 1080x1920 + AUTO: sensor_width spans the HEIGHT (the larger side), viewfac = 1920:
    #   lens = 1000 * 36 / 1920 = 18.75; shift_x = (540 - 500) / 1920 (in units of the height).
    cam = cv.intrinsics_to_blender(cv.Intrinsics(1000.0, 1000.0, 500.0, 1000.0, 1080, 1920))
    assert cam.lens == pytest.approx(18.75, rel=1e-15)
    assert cam.shift_x == pytest.approx(40.0 / 1920, rel=1e-15)
    assert cam.shift_y == pytest.approx(40.0 / 1920, rel=1e-15)
    # fx = 2 fy: pixels twice as tall as wide -> pixel_aspect_y / pixel_aspect_x = 2.
    cam = cv.intrinsics_to_blender(cv.Intrinsics(1000.0, 500.0, 320.0, 240.0, 640, 480))
    assert (cam.pixel_aspect_x, cam.pixel_aspect_y) == (1.0, 2.0)
    cam = cv.intrinsics_to_blender(cv.Intrinsics(500.0, 1000.0, 320.0, 240.0, 640, 480))
    assert (cam.pixel_aspect_x, cam.pixel_aspect_y) == (2.0, 1.0)


def test_field_of_view_matches_blender_angle_definition():
    # Blender: angle = 2 atan(sensor / (2 lens)) along the fitted axis. Centred 640x480 with fx = 500:
    # horizontal FOV = 2 atan(320 / 500); portrait 480x640 fits the vertical: 2 atan(320 / fy).
    cam = cv.intrinsics_to_blender(cv.Intrinsics(500.0, 500.0, 320.0, 240.0, 640, 480))
    assert 2 * math.atan(cam.sensor_width / (2 * cam.lens)) == pytest.approx(2 * math.atan(320 / 500), rel=1e-14)
    cam = cv.intrinsics_to_blender(cv.Intrinsics(500.0, 400.0, 240.0, 320.0, 480, 640))
    # fx/fy = 1.25 -> pixel_aspect_y = 1.25 -> aspect-corrected size 480 x 800: still portrait.
    assert 2 * math.atan(cam.sensor_width / (2 * cam.lens)) == pytest.approx(2 * math.atan(320 / 400), rel=1e-14)


@FAST
@given(intrinsics(), fits, sensor_sizes)
def test_intrinsics_blender_round_trip(intr, fit, sensor):
    cam = cv.intrinsics_to_blender(intr, fit, sensor)
    assert cam.sensor_fit == fit
    assert min(cam.pixel_aspect_x, cam.pixel_aspect_y) == 1.0
    back = cv.blender_to_intrinsics(cam)
    assert (back.width, back.height) == (intr.width, intr.height)
    for name in ("fx", "fy", "cx", "cy"):
        assert getattr(back, name) == pytest.approx(getattr(intr, name), rel=1e-12, abs=1e-9)
    assert cv.BlenderCamera.from_dict(json.loads(json.dumps(cam.to_dict()))) == cam


@FAST
@given(intrinsics(), sensor_sizes)
def test_auto_fit_equals_its_resolved_fit(intr, sensor):
    """AUTO behaves as HORIZONTAL for (aspect-corrected) landscape and as VERTICAL for portrait."""
    auto = cv.intrinsics_to_blender(intr, "AUTO", sensor)
    fit = cv.resolved_sensor_fit("AUTO", intr.width * auto.pixel_aspect_x, intr.height * auto.pixel_aspect_y)
    explicit = cv.BlenderCamera(**{**auto.to_dict(), "sensor_fit": fit})
    a, b = cv.blender_to_intrinsics(auto), cv.blender_to_intrinsics(explicit)
    for name in ("fx", "fy", "cx", "cy"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-12, abs=1e-9)
    # The fitted sensor size spans the larger aspect-corrected image side.
    larger = max(intr.width * auto.pixel_aspect_x, intr.height * auto.pixel_aspect_y)
    xmin, xmax, ymin, ymax = cv.blender_viewplane(auto)
    span = (xmax - xmin) if fit == "HORIZONTAL" else (ymax - ymin)
    assert span == pytest.approx(sensor / auto.lens, rel=1e-12)
    assert larger == (intr.width * auto.pixel_aspect_x if fit == "HORIZONTAL" else intr.height * auto.pixel_aspect_y)


def test_bad_intrinsics_raise_clear_errors():
    with pytest.raises(ValueError, match="focal lengths must be positive"):
        cv.intrinsics_to_blender(cv.Intrinsics(0.0, 1.0, 1.0, 1.0, 10, 10))
    with pytest.raises(ValueError, match="width and height"):
        cv.intrinsics_to_blender(cv.Intrinsics(1.0, 1.0, 1.0, 1.0, 0, 10))
    with pytest.raises(ValueError, match="sensor_fit"):
        cv.intrinsics_to_blender(cv.Intrinsics(100.0, 100.0, 1.0, 1.0, 10, 10), "DIAGONAL")
    with pytest.raises(ValueError, match="pixel aspect"):
        cv.intrinsics_to_blender(cv.Intrinsics(1000.0, 1.0, 1.0, 1.0, 10, 10))
    with pytest.raises(ValueError, match="1 mm minimum"):
        cv.intrinsics_to_blender(cv.Intrinsics(1.0, 1.0, 1.0, 1.0, 1000, 1000))
    with pytest.raises(ValueError, match="no skew"):
        cv.Intrinsics.from_K([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], 10, 10)
    with pytest.raises(ValueError, match="unknown field"):
        cv.BlenderCamera.from_dict({"lens": 1.0, "focal": 2.0})


# --------------------------------------------------------------------------- projection


def test_pixel_convention_analytic():
    intr = cv.Intrinsics(100.0, 100.0, 40.0, 30.0, 80, 60)
    w2c = np.eye(4)
    # The optical axis hits (cx, cy); the ray through the top-left image corner hits (0, 0).
    uv, z = cv.project_opencv(np.array([[0.0, 0.0, 2.0], [-0.4 * 3, -0.3 * 3, 3.0]]), intr.K, w2c)
    np.testing.assert_allclose(uv, [[40.0, 30.0], [0.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(z, [2.0, 3.0])
    # Through Blender: the view plane's (xmin, ymax) corner is the top-left corner of the image.
    cam = cv.intrinsics_to_blender(intr)
    xmin, xmax, ymin, ymax = cv.blender_viewplane(cam)
    uv, depth = cv.project_blender(np.array([[2 * xmin, 2 * ymax, -2.0], [xmax, ymin, -1.0]]), cam, np.eye(4))
    np.testing.assert_allclose(uv, [[0.0, 0.0], [80.0, 60.0]], atol=1e-12)
    np.testing.assert_allclose(depth, [2.0, 1.0])


def test_project_opencv_matches_cv2():
    import cv2
    rng = np.random.default_rng(3)
    K = np.array([[900.0, 0, 310.5], [0, 870.0, 260.25], [0, 0, 1]])
    R = cv.quaternion_to_matrix(rng.normal(size=4))
    t = np.array([0.3, -0.2, 6.0])
    pts = rng.uniform(-2, 2, size=(40, 3))
    ref, _ = cv2.projectPoints(pts, cv2.Rodrigues(R)[0], t, K, None)
    uv, z = cv.project_opencv(pts, K, cv.make_pose(R, t))
    np.testing.assert_allclose(uv, ref[:, 0, :], atol=1e-9)


@FAST
@given(intrinsics(), fits, sensor_sizes, rotations(), translations, st.integers(0, 2**32 - 1))
def test_same_pixel_through_opencv_and_blender(intr, fit, sensor, R, t, seed):
    """A point lands on the same pixel through (K, w2c) and through (BlenderCamera, matrix_world)."""
    c2w_cv = cv.make_pose(R, t)
    pts, uv_expected = points_in_front(intr.K, c2w_cv, intr.width, intr.height, np.random.default_rng(seed))
    uv_cv, z_cv = cv.project_opencv(pts, intr.K, cv.invert_pose(c2w_cv))
    cam = cv.intrinsics_to_blender(intr, fit, sensor)
    # Blender ignores the camera object's scale; project_blender must too.
    mw = cv.c2w_opencv_to_blender(c2w_cv) @ np.diag([2.0, 0.5, 3.0, 1.0])
    uv_bl, z_bl = cv.project_blender(pts, cam, mw)
    np.testing.assert_allclose(uv_cv, uv_expected, atol=1e-6)
    np.testing.assert_allclose(uv_bl, uv_cv, atol=1e-6)
    np.testing.assert_allclose(z_bl, z_cv, rtol=1e-9)


# --------------------------------------------------------------------------- quaternions


def test_quaternion_analytic():
    s = math.sqrt(0.5)
    Rz90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(cv.matrix_to_quaternion(Rz90), [s, 0, 0, s], atol=1e-15)
    np.testing.assert_allclose(cv.quaternion_to_matrix([s, 0, 0, s]), Rz90, atol=1e-15)
    np.testing.assert_allclose(cv.matrix_to_quaternion(np.diag([1.0, -1.0, -1.0])), [0, 1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(cv.matrix_to_quaternion(np.eye(3)), [1, 0, 0, 0], atol=0)


@FAST
@given(rotations())
def test_quaternion_round_trip_and_scipy(R):
    from scipy.spatial.transform import Rotation
    q = cv.matrix_to_quaternion(R)
    assert q[0] >= 0.0 and np.linalg.norm(q) == pytest.approx(1.0)
    np.testing.assert_allclose(cv.quaternion_to_matrix(q), R, atol=1e-12)
    x, y, z, w = Rotation.from_matrix(R).as_quat()
    ref = np.array([w, x, y, z])
    assert min(np.abs(q - ref).max(), np.abs(q + ref).max()) < 1e-12


@FAST
@given(st.tuples(*[st.floats(-1.0, 1.0, **finite)] * 3).filter(lambda v: np.linalg.norm(v) > 1e-3),
       st.floats(-1e-7, 1e-7))
def test_quaternion_near_180_degrees(axis, eps):
    """Angles at and around pi (w ~ 0) are where naive trace-based conversions lose precision."""
    a = np.array(axis) / np.linalg.norm(axis)
    ang = math.pi - abs(eps)
    q = np.r_[math.cos(ang / 2), math.sin(ang / 2) * a]
    q2 = cv.matrix_to_quaternion(cv.quaternion_to_matrix(q))
    assert min(np.abs(q2 - q).max(), np.abs(q2 + q).max()) < 1e-12


@FAST
@given(st.lists(rotations(), min_size=1, max_size=30), st.lists(st.booleans(), min_size=30, max_size=30))
def test_quaternion_sign_continuity(Rs, flips):
    q = cv.matrix_to_quaternion(np.array(Rs))
    q = q * np.where(flips[: len(q)], -1.0, 1.0)[:, None]
    out = cv.quaternion_sign_continuity(q)
    np.testing.assert_array_equal(out[0], q[0])
    assert np.all(np.einsum("ij,ij->i", out[1:], out[:-1]) >= 0.0)
    # Each output is +-1 times its input: same rotation.
    assert np.all(np.isclose(np.abs(np.einsum("ij,ij->i", out, q)), 1.0))


def test_quaternion_sign_continuity_smooth_rotation():
    # A rotation about Z sweeping through 720 deg: the quaternion components must stay continuous
    # (no jump between consecutive samples larger than the analytic step 2 sin(dtheta/4)).
    theta = np.linspace(0.0, 4 * math.pi, 200)
    R = np.array([[[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]] for a in theta])
    q = cv.quaternion_sign_continuity(cv.matrix_to_quaternion(R))
    step = np.linalg.norm(np.diff(q, axis=0), axis=1)
    assert step.max() <= 2 * math.sin((theta[1] - theta[0]) / 4) + 1e-12


# --------------------------------------------------------------------------- real cameras


def _herz_cameras():
    cams = []
    for f in sorted((HERZ / "gt_dense_cameras").glob("*.camera")):
        v = np.array(f.read_text().split(), dtype=float)
        K, R, C, (W, H) = v[:9].reshape(3, 3), v[12:21].reshape(3, 3), v[21:24], v[24:26]
        U, _, Vt = np.linalg.svd(R)  # the file's R has 6 digits: use the nearest exact rotation
        cams.append((K, cv.make_pose(U @ Vt, C), int(W), int(H)))
    return cams


@needs_shared_data("herz-jesus-p8")
def test_real_herz_jesus_cameras_through_blender_z_up():
    """Surveyed cameras (world +z DOWN, fx != fy, off-centre principal point) -> Blender Z-up world."""
    cams = _herz_cameras()
    assert len(cams) == 8
    M = cv.rotation_to_z_up([0.0, 0.0, -1.0])  # that world's up is -z
    rng = np.random.default_rng(5)
    for K, c2w, W, H in cams:
        intr = cv.Intrinsics.from_K(K, W, H)
        pts, uv_expected = points_in_front(K, c2w, W, H, rng)
        # OpenCV projection as the benchmark defines it: P = K [R^T | -R^T C].
        P = K @ np.c_[c2w[:3, :3].T, -c2w[:3, :3].T @ c2w[:3, 3]]
        x = np.c_[pts, np.ones(len(pts))] @ P.T
        np.testing.assert_allclose(x[:, :2] / x[:, 2:], uv_expected, atol=1e-6)
        mw = cv.c2w_opencv_to_blender(cv.transform_poses(M, c2w))
        uv_bl, depth = cv.project_blender(cv.transform_points(M, pts), cv.intrinsics_to_blender(intr), mw)
        np.testing.assert_allclose(uv_bl, uv_expected, atol=1e-6)
        # In the new world the cameras stand upright: image "up" (Blender local +Y) points to world +Z.
        assert mw[2, 1] > 0.9


# --------------------------------------------------------------------------- real Blender

OBJECT_SCALE = np.diag([2.0, 0.5, 4.0, 1.0])  # powers of two: exact in float32
BPY_PYTHON = Path(sys.executable)  # bpy is a test dependency of the project environment

_BPY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import bpy, numpy as np
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Matrix, Vector

    job = json.load(open(sys.argv[1]))
    out = {"projected": [], "rendered": []}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene

    def setup(case, name):
        for ob in list(bpy.data.objects):
            bpy.data.objects.remove(ob)
        c = case["camera"]
        r = scene.render
        r.resolution_x, r.resolution_y, r.resolution_percentage = c["resolution_x"], c["resolution_y"], 100
        r.pixel_aspect_x, r.pixel_aspect_y = c["pixel_aspect_x"], c["pixel_aspect_y"]
        cam = bpy.data.cameras.new(name)
        for k in ("lens", "sensor_width", "sensor_height", "sensor_fit", "shift_x", "shift_y"):
            setattr(cam, k, c[k])
        ob = bpy.data.objects.new(name, cam)
        scene.collection.objects.link(ob)
        ob.matrix_world = Matrix(case["matrix_world"])
        scene.camera = ob
        return ob

    for i, case in enumerate(job["projected"]):
        ob = setup(case, f"p{i}")
        out["projected"].append([list(world_to_camera_view(scene, ob, Vector(p))) for p in case["points"]])

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 64
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.render.image_settings.file_format = "OPEN_EXR"
    mat = bpy.data.materials.new("emit")
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    nodes.clear()
    emit, mout = nodes.new("ShaderNodeEmission"), nodes.new("ShaderNodeOutputMaterial")
    mat.node_tree.links.new(emit.outputs[0], mout.inputs[0])
    for i, case in enumerate(job["rendered"]):
        setup(case, f"r{i}")
        me = bpy.data.meshes.new(f"disc{i}")
        me.from_pydata(case["disc"], [], [list(range(len(case["disc"])))])
        me.materials.append(mat)
        scene.collection.objects.link(bpy.data.objects.new(f"disc{i}", me))
        path = f"{job['dir']}/render{i}.exr"
        scene.render.filepath = path
        bpy.ops.render.render(write_still=True)
        img = bpy.data.images.load(path)
        W, H = scene.render.resolution_x, scene.render.resolution_y
        px = np.array(img.pixels[:]).reshape(H, W, 4)[::-1, :, 0]  # Blender stores rows bottom-up
        v, u = np.mgrid[0:H, 0:W] + 0.5                              # pixel centres at +0.5
        s = px.sum()
        edge = px[0].sum() + px[-1].sum() + px[:, 0].sum() + px[:, -1].sum()
        out["rendered"].append({"centroid": [(u * px).sum() / s, (v * px).sum() / s], "sum": s, "edge": edge})
    json.dump(out, open(sys.argv[2], "w"))
    """
)


def _bpy_cases():
    """(name, Intrinsics, fit, c2w_opencv) for the world_to_camera_view comparison."""
    rng = np.random.default_rng(11)
    look = lambda: cv.quaternion_to_matrix(rng.normal(size=4))  # noqa: E731
    cases = [
        ("landscape, off-centre", cv.Intrinsics(1100.0, 1100.0, 700.3, 301.7, 1280, 720), "AUTO"),
        ("portrait, off-centre", cv.Intrinsics(900.0, 900.0, 301.2, 700.9, 720, 1280), "AUTO"),
        ("portrait, fx != fy", cv.Intrinsics(950.0, 1020.0, 350.0, 600.0, 720, 1280), "AUTO"),
        ("landscape, fx != fy, vertical fit", cv.Intrinsics(1020.0, 950.0, 600.0, 350.0, 1280, 720), "VERTICAL"),
        ("portrait, horizontal fit", cv.Intrinsics(800.0, 800.0, 250.0, 500.0, 540, 960), "HORIZONTAL"),
    ]
    out = [(n, i, f, cv.make_pose(look(), rng.uniform(-1, 1, 3))) for n, i, f in cases]
    if HERZ.exists():
        K, c2w, W, H = _herz_cameras()[0]
        c2w[:3, 3] = 0.0  # world origin moved to the camera centre (see the float32 note below)
        out.append(("Herz-Jesus real camera 3072x2048", cv.Intrinsics.from_K(K, W, H), "AUTO", c2w))
    return out


def _render_cases():
    """(Intrinsics, c2w_opencv, disc centre in OpenCV camera space, disc radius) for Cycles renders."""
    rng = np.random.default_rng(12)
    return [
        (cv.Intrinsics(70.0, 70.0, 37.3, 26.6, 80, 60), cv.make_pose(np.eye(3), [0.0, 0.0, 0.0]), [0.3, 0.2, 4.0], 0.5),
        (cv.Intrinsics(60.0, 75.0, 21.7, 35.2, 48, 64),
         cv.make_pose(cv.quaternion_to_matrix(rng.normal(size=4)), [1.0, -2.0, 0.5]), [-0.4, 0.3, 5.0], 0.6),
    ]


@pytest.fixture(scope="module")
def blender_results(tmp_path_factory):
    d = tmp_path_factory.mktemp("bpy")
    job = {"dir": str(d), "projected": [], "rendered": []}
    expected = {"projected": [], "rendered": []}
    rng = np.random.default_rng(13)
    for name, intr, fit, c2w in _bpy_cases():
        pts, _ = points_in_front(intr.K, c2w, intr.width, intr.height, rng, n=40, depth=(2.0, 30.0))
        # Blender holds coordinates in float32: give it float32-exact inputs and project those same
        # values in float64 here, so the comparison measures the conversion, not the input rounding.
        pts = pts.astype(np.float32).astype(float)
        mw = cv.c2w_opencv_to_blender(c2w).astype(np.float32).astype(float)
        job["projected"].append({
            "camera": cv.intrinsics_to_blender(intr, fit).to_dict(),
            "matrix_world": (mw @ OBJECT_SCALE).tolist(),  # Blender must ignore the camera's scale
            "points": pts.tolist(),
        })
        uv_cv, _ = cv.project_opencv(pts, intr.K, np.linalg.inv(cv.c2w_blender_to_opencv(mw)))
        expected["projected"].append((name, intr, uv_cv))
    for intr, c2w, centre, radius in _render_cases():
        # A regular 64-gon facing the camera (parallel to the image plane): its image is an affine copy
        # whose area centroid is exactly the projection of its centre.
        a = np.linspace(0.0, 2 * math.pi, 64, endpoint=False)
        disc_cam = np.c_[radius * np.cos(a), radius * np.sin(a), np.zeros(64)] + centre
        job["rendered"].append({
            "camera": cv.intrinsics_to_blender(intr).to_dict(),
            "matrix_world": (cv.c2w_opencv_to_blender(c2w) @ OBJECT_SCALE).tolist(),
            "disc": cv.transform_points(c2w, disc_cam).tolist(),
        })
        uv_c, _ = cv.project_opencv(cv.transform_points(c2w, np.array(centre)), intr.K, cv.invert_pose(c2w))
        polygon_area = 0.5 * 64 * math.sin(2 * math.pi / 64) * radius**2
        expected["rendered"].append((intr, uv_c[0], polygon_area * intr.fx * intr.fy / centre[2] ** 2))
    (d / "job.json").write_text(json.dumps(job))
    (d / "script.py").write_text(_BPY_SCRIPT)
    proc = subprocess.run([str(BPY_PYTHON), str(d / "script.py"), str(d / "job.json"), str(d / "out.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((d / "out.json").read_text()), expected


def test_blender_world_to_camera_view_matches_opencv(blender_results):
    """bpy's own projection of our converted camera agrees with the OpenCV projection.

    Tolerance 1e-3 px. Blender computes in float32 (unit roundoff 6e-8): lens, sensor, shift and
    pixel aspect are rounded (relative 6e-8 of |u - cx| <= 1.5 W: <= 3e-4 px at W = 3072), and
    ``R^T (p - C)`` in float32 errs by ~6e-8 |p| absolute, i.e. 6e-8 f |p| / z px; cameras within 1
    unit of the origin and depths 2..30 keep |p| / z <= ~3, so <= 6e-8 * 2800 * 3 = 5e-4 px.
    (Cameras 10 units from the origin with points 0.1 units away would err by ~1e-2 px in Blender
    itself, whatever the conversion.)
    """
    got, expected = blender_results
    for res, (name, intr, uv_cv) in zip(got["projected"], expected["projected"]):
        xyz = np.array(res)
        uv_bl = np.c_[xyz[:, 0] * intr.width, (1.0 - xyz[:, 1]) * intr.height]
        err = np.abs(uv_bl - uv_cv).max()
        print(f"world_to_camera_view vs OpenCV, {name}: max error {err:.2e} px")
        assert err < 1e-3, f"{name}: max error {err:.2e} px"
    assert len(got["projected"]) >= 5


def test_blender_cycles_render_matches_opencv_pixel_centres(blender_results):
    """A Cycles render puts an emitting disc where the OpenCV projection (pixel centres at +0.5) says.

    The disc's rendered image is an ellipse with centroid at the projected centre; Cycles' pixel filter is
    symmetric, so the intensity centroid is unbiased. Sampling noise (64 samples, only edge pixels vary,
    ~2 pi r of them at distance ~r) gives a centroid error of a few 1e-2 px; a half-pixel convention error
    would shift it by 0.5 px, so 0.1 px separates the two.
    """
    got, expected = blender_results
    for res, (intr, uv_c, area) in zip(got["rendered"], expected["rendered"]):
        assert res["edge"] == 0.0, "the disc must lie inside the frame"
        print(f"Cycles disc centroid - projected centre: {np.subtract(res['centroid'], uv_c)} px, "
              f"intensity sum / image area: {res['sum'] / area:.4f}")
        # Total intensity = image area in pixels (emission 1): checks fx * fy, hence the pixel aspect.
        assert res["sum"] == pytest.approx(area, rel=0.01)
        np.testing.assert_allclose(res["centroid"], uv_c, atol=0.1)
