"""Camera path maths against analytic truth: orbit geometry, exact interpolation through keys,
C1 smoothness by finite differences, quaternion continuity, nerfstudio round trips, and the
animated Blender camera (bpy subprocess) against the same matrices.

The add-on's bpy-free modules are imported directly: the package loads its bpy layer only
where bpy is already loaded, so bpy stays out of the pytest process.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "blender_scripts"))
from bpy_subprocess import run_script  # noqa: E402
import shared_protocol.camera_paths as cp  # noqa: E402


FMT = dict(focal_px=400.0, width=320, height=180, fps=24.0)


def rotation_about(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def check_looks_at(m, target, tol=1e-12):
    """The camera's -Z axis points at ``target``; its x axis is horizontal; y leans up."""
    view = -m[:3, 2]
    to_t = np.asarray(target) - m[:3, 3]
    to_t = to_t / np.linalg.norm(to_t)
    assert np.linalg.norm(np.cross(view, to_t)) < tol and view @ to_t > 0
    assert abs(m[2, 0]) < tol and m[2, 1] > 0
    assert np.allclose(m[:3, :3].T @ m[:3, :3], np.eye(3), atol=1e-12)
    assert np.linalg.det(m[:3, :3]) == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------ generators


def test_orbit_keeps_distance_and_looks_at_target():
    target = np.array([0.3, -0.2, 0.5])
    eye = np.array([2.0, 1.0, 1.6])
    path = cp.orbit(target, eye, 48, **FMT)
    d = np.linalg.norm(path.matrices[:, :3, 3] - target, axis=1)
    np.testing.assert_allclose(d, np.linalg.norm(eye - target), rtol=1e-13)
    for m in path.matrices:
        check_looks_at(m, target)
    np.testing.assert_allclose(path.matrices[:, 2, 3], eye[2], atol=1e-13)   # height about the axis
    np.testing.assert_allclose(path.matrices[0, :3, 3], eye, atol=1e-13)
    # a closed loop: equal steps of 360/48 deg, and the step after the last returns to the start
    rel = path.matrices[:, :2, 3] - target[:2]
    ang = np.unwrap(np.arctan2(rel[:, 1], rel[:, 0]))
    np.testing.assert_allclose(np.diff(ang), 2 * np.pi / 48, atol=1e-12)
    assert path.frames[0] == 1 and len(path) == 48


def test_partial_orbit_ends_at_the_requested_angle():
    target, eye = np.zeros(3), np.array([1.0, 0.0, 0.4])
    path = cp.orbit(target, eye, 10, degrees=90.0, **FMT)
    np.testing.assert_allclose(path.matrices[-1, :3, 3], [0.0, 1.0, 0.4], atol=1e-13)


def test_spiral_radius_height_and_aim():
    target, eye = np.array([0.0, 0.0, 0.2]), np.array([2.0, 0.0, 1.2])
    path = cp.spiral(target, eye, 61, turns=1.5, radius_scale=0.5, rise=0.6, **FMT)
    t = np.linspace(0, 1, 61)
    rel = path.matrices[:, :3, 3] - target
    np.testing.assert_allclose(np.hypot(rel[:, 0], rel[:, 1]), 2.0 * (1 - 0.5 * t), rtol=1e-12)
    np.testing.assert_allclose(rel[:, 2], 1.0 + 0.6 * t, atol=1e-12)
    ang = np.unwrap(np.arctan2(rel[:, 1], rel[:, 0]))
    assert ang[-1] - ang[0] == pytest.approx(3 * np.pi, abs=1e-9)
    for m in path.matrices:
        check_looks_at(m, target)


def test_dolly_zoom_keeps_target_size():
    target, eye = np.array([0.0, 0.0, 0.5]), np.array([0.0, -4.0, 1.0])
    path = cp.dolly(eye, target, 25, distance=2.0, keep_target_size=True, **FMT)
    d = np.linalg.norm(path.matrices[:, :3, 3] - target, axis=1)
    # an object of size s at the target spans f * s / d pixels: constant along the dolly zoom
    np.testing.assert_allclose(path.focal_px / d, FMT["focal_px"] / d[0], rtol=1e-12)
    assert d[-1] == pytest.approx(d[0] - 2.0, abs=1e-12)
    steps = np.diff(d)
    assert abs(steps[0]) < abs(steps[12]) and abs(steps[-1]) < abs(steps[12])   # eases in and out
    for m in path.matrices:
        check_looks_at(m, target)
    with pytest.raises(cp.CameraPathError, match="reaches the target"):
        cp.dolly(eye, target, 5, distance=10.0, **FMT)


# ------------------------------------------------------------------ interpolation


def solved_keys(n=9, seed=3):
    """Unevenly spaced keys of a hand-held camera circling a point, with roll and zoom."""
    rng = np.random.default_rng(seed)
    frames = np.cumsum(rng.integers(2, 9, size=n)).astype(float)
    mats = []
    for k in range(n):
        a = 0.35 * k
        eye = np.array([3 * math.cos(a), 3 * math.sin(a), 1.5 + 0.2 * math.sin(2 * a)])
        m = cp.look_at(eye, [0.1, 0.0, 0.4], roll_deg=8 * math.sin(1.3 * k))
        mats.append(m)
    focal = 500 + 40 * np.sin(np.arange(n))
    return np.array(mats), frames, focal


def test_interpolation_passes_through_keys():
    mats, frames, focal = solved_keys()
    out, f = cp.interpolate_poses(mats, frames, frames, focal)
    np.testing.assert_allclose(out, mats, atol=1e-12)
    np.testing.assert_allclose(f, focal, rtol=1e-12)
    path = cp.through_cameras(mats, focal, frames, width=320, height=180, fps=24.0)
    assert len(path) == frames[-1] - frames[0] + 1 and path.frame_start == int(frames[0])
    at_keys = (frames - frames[0]).astype(int)
    np.testing.assert_allclose(path.matrices[at_keys], mats, atol=1e-12)


def one_sided(fn, t, h):
    c = fn(np.array([t - h, t, t + h]))
    return (c[1] - c[0]) / h, (c[2] - c[1]) / h


def angular_velocity(R0, R1, h):
    """Body-frame angular velocity (rad per frame) that turns R0 into R1 in time h."""
    dR = R0.T @ R1
    w = np.array([dR[2, 1] - dR[1, 2], dR[0, 2] - dR[2, 0], dR[1, 0] - dR[0, 1]]) / 2
    return w / h


def test_interpolation_is_c1_at_uneven_keys():
    """One-sided finite differences agree at every interior key. With step h the two
    differences of a C1 curve differ by at most h * (|x''(t-)| + |x''(t+)|) / 2 ~ h * 2 * max|x''|;
    a corner (C0 only) differs by the velocity jump, O(1) in these units. The same check on
    piecewise-linear interpolation must fail, so the criterion detects kinks."""
    mats, frames, focal = solved_keys()
    h = 1e-4
    pos = lambda t: cp.interpolate_poses(mats, frames, t)[0][:, :3, 3]          # noqa: E731
    rot = lambda t: cp.interpolate_poses(mats, frames, t)[0][:, :3, :3]         # noqa: E731
    foc = lambda t: cp.interpolate_poses(mats, frames, t, focal)[1]             # noqa: E731
    dense = np.linspace(frames[0], frames[-1], 4001)
    p = pos(dense)
    step = dense[1] - dense[0]
    acc = np.abs(np.diff(p, 2, axis=0)).max() / step ** 2
    vel_scale = np.abs(np.diff(p, axis=0)).max() / step
    tol_pos = 4 * h * acc + 1e-9
    assert tol_pos < 0.05 * vel_scale                                           # the test can resolve a kink
    for t in frames[1:-1]:
        left, right = one_sided(pos, t, h)
        assert np.abs(left - right).max() < tol_pos
        fl, fr = one_sided(foc, t, h)
        assert abs(fl - fr) < 1e-4 * 40
        R = rot(np.array([t - h, t, t + h]))
        wl, wr = angular_velocity(R[0], R[1], h), angular_velocity(R[1], R[2], h)
        assert np.abs(wl - wr).max() < 1e-5, (t, wl, wr)
    # piecewise-linear interpolation of the same keys has corners that the criterion catches
    lin = lambda t: np.stack([np.interp(t, frames, mats[:, i, 3]) for i in range(3)], 1)  # noqa: E731
    kinks = [np.abs(np.subtract(*one_sided(lin, t, h))).max() for t in frames[1:-1]]
    assert max(kinks) > 10 * tol_pos


def test_rotation_takes_the_short_way_and_keys_with_flipped_signs_agree():
    mats, frames, _ = solved_keys()
    q = cp._matrix_to_quaternion(mats[:, :3, :3])
    flipped = q * np.where(np.arange(len(q)) % 2, -1.0, 1.0)[:, None]
    t = np.linspace(frames[0], frames[-1], 500)
    a = cp._quaternion_to_matrix(cp.quaternion_spline(q, frames, t))
    b = cp._quaternion_to_matrix(cp.quaternion_spline(flipped, frames, t))
    np.testing.assert_allclose(a, b, atol=1e-12)
    qs = cp.quaternion_spline(flipped, frames, t)
    assert np.all(np.einsum("ij,ij->i", qs[1:], qs[:-1]) > 0.99)               # continuous signs
    # the rotation between neighbouring samples stays small (no long way round)
    dR = np.einsum("nji,njk->nik", a[:-1], a[1:])
    ang = np.degrees(np.arccos(np.clip((np.trace(dR, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert ang.max() < 2.0


def test_two_keys_give_slerp_at_constant_rate():
    R0 = np.eye(3)
    R1 = rotation_about([0, 0, 1], math.radians(120))
    mats = np.tile(np.eye(4), (2, 1, 1))
    mats[0, :3, :3], mats[1, :3, :3] = R0, R1
    mats[1, :3, 3] = [2.0, 0.0, 0.0]
    t = np.linspace(0, 10, 11)
    out, _ = cp.interpolate_poses(mats, [0.0, 10.0], t)
    for k, m in enumerate(out):
        np.testing.assert_allclose(m[:3, :3], rotation_about([0, 0, 1], math.radians(12 * k)), atol=1e-12)
        np.testing.assert_allclose(m[:3, 3], [0.2 * k, 0, 0], atol=1e-12)


def test_pick_keys_and_bad_keys():
    np.testing.assert_array_equal(cp.pick_keys(10, 4), [0, 4, 8, 9])
    np.testing.assert_array_equal(cp.pick_keys(9, 4), [0, 4, 8])
    with pytest.raises(cp.CameraPathError, match="strictly increasing"):
        cp.interpolate_poses(np.tile(np.eye(4), (2, 1, 1)), [3, 3], [3])


def test_path_as_cameras_document_validates_and_keeps_poses():
    from shared_protocol import camera_file

    path = cp.spiral([0, 0, 0.2], [2, 0, 1.2], 30, turns=1.0, rise=0.4, **FMT)
    doc = camera_file.validate(json.loads(json.dumps(cp.to_cameras_document(path))))
    np.testing.assert_array_equal(camera_file.matrices(doc), path.matrices)
    assert [fr["principal_point_px"] for fr in doc["frames"]] == [[160.0, 90.0]] * 30
    assert [fr["source"] for fr in doc["frames"]] == [str(f) for f in path.frames]


def test_through_the_committed_sample_cameras():
    """A path through every 8th true camera of the sample clip meets all the used cameras exactly
    and stays within the hand-held shake of the others (the shake is a few mm / tenths of a degree
    of RMS; the smooth path may not follow it, but must not wander off by more than 2 cm)."""
    truth = json.loads((REPO / "backend" / "samples" / "sample_truth.json").read_text())
    path = cp.through_solved(truth, every=8)
    mats = np.array([fr["matrix_world"] for fr in truth["frames"]])
    assert len(path) == len(mats) and path.frame_start == 1
    keys = cp.pick_keys(len(mats), 8)
    # the truth was read from Blender in float32 (rotations orthonormal to ~1e-7); the path holds
    # the nearest exact rotations
    np.testing.assert_allclose(path.matrices[keys], mats[keys], atol=1e-6)
    assert np.abs(path.matrices[:, :3, 3] - mats[:, :3, 3]).max() < 0.02


# ------------------------------------------------------------------ nerfstudio


def test_nerfstudio_round_trip_is_exact(tmp_path):
    mats, frames, focal = solved_keys()
    path = cp.through_cameras(mats, focal, frames, width=640, height=360, fps=29.97, every=2)
    f = cp.write_nerfstudio(path, tmp_path / "camera_path.json")
    back = cp.read_nerfstudio(f, frame_start=path.frame_start)
    np.testing.assert_array_equal(back.matrices, path.matrices)                 # JSON floats are exact
    np.testing.assert_allclose(back.focal_px, path.focal_px, rtol=1e-13)        # through tan(atan(.))
    assert (back.width, back.height, back.fps, back.frame_start) == (640, 360, 29.97, path.frame_start)
    again = cp.to_nerfstudio(back)
    first = json.loads(f.read_text())
    assert [c["camera_to_world"] for c in again["camera_path"]] == [c["camera_to_world"] for c in first["camera_path"]]
    np.testing.assert_allclose([c["fov"] for c in again["camera_path"]],
                               [c["fov"] for c in first["camera_path"]], rtol=1e-13)


def test_nerfstudio_fov_and_aspect_match_intrinsics(tmp_path):
    path = cp.orbit([0, 0, 0], [2, 0, 1], 4, focal_px=500.0, width=640, height=360, fps=24.0)
    doc = cp.to_nerfstudio(path)
    assert doc["camera_type"] == "perspective" and doc["seconds"] == pytest.approx(4 / 24)
    cam = doc["camera_path"][0]
    # vertical fov of a 360 px tall image at f = 500 px: 2 atan(180 / 500)
    assert cam["fov"] == pytest.approx(math.degrees(2 * math.atan(180 / 500)), rel=1e-14)
    assert cam["aspect"] == pytest.approx(640 / 360)
    m = np.array(cam["camera_to_world"]).reshape(4, 4)                         # row-major
    np.testing.assert_array_equal(m, path.matrices[0])
    assert m[3].tolist() == [0, 0, 0, 1]


def test_nerfstudio_bad_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(cp.CameraPathError, match="bad.json: not valid JSON"):
        cp.read_nerfstudio(bad)
    bad.write_text(json.dumps({"render_width": 10, "render_height": 10, "fps": 24,
                               "camera_path": [{"camera_to_world": [1, 0, 0], "fov": 50}]}))
    with pytest.raises(cp.CameraPathError, match=r"bad.json: camera_path\[0\].camera_to_world"):
        cp.read_nerfstudio(bad)
    bad.write_text(json.dumps({"render_width": 10, "render_height": 10, "camera_type": "fisheye",
                               "camera_path": []}))
    with pytest.raises(cp.CameraPathError, match="fisheye"):
        cp.read_nerfstudio(bad)
    with pytest.raises(cp.CameraPathError, match="file not found"):
        cp.read_nerfstudio(tmp_path / "missing.json")


# ------------------------------------------------------------------ Blender camera


def test_blender_camera_follows_the_path(tmp_path):
    """The animated camera created from a nerfstudio file reproduces the path's matrices and
    projects a world point where the pinhole model says, on every frame. Blender stores keys
    and lens as float32: 1e-6 relative on poses of unit scale, ~1e-3 px at f = 400 px."""
    target = np.array([0.2, 0.1, 0.3])
    path = cp.dolly([0.5, -3.0, 1.2], target, 12, distance=1.0, keep_target_size=True,
                    focal_px=400.0, width=320, height=180, fps=24.0, frame_start=5)
    f = cp.write_nerfstudio(path, tmp_path / "camera_path.json")
    out = tmp_path / "result.json"
    run_script("camera_path_camera.py", f, out, path.frame_start, user_dir=tmp_path / "user", timeout=120)
    got = json.loads(out.read_text())
    assert got["frames"] == path.frames.tolist()
    assert (got["resolution"], got["fps"]) == ([320, 180], [24, 1.0])
    np.testing.assert_allclose(np.array(got["matrices"]), path.matrices, atol=2e-6)
    # the orbit operator: 16 frames about the cursor, from the camera's pose at the first frame
    orbit = np.array(got["orbit"])
    assert len(orbit) == 16 and got["orbit_frames"] == [path.frame_start, path.frame_start + 15]
    r0 = np.linalg.norm(np.array(got["eye0"])[:3, 3] - [0.2, 0.1, 0.3])
    np.testing.assert_allclose(orbit[:, 0], r0, rtol=1e-5)                      # constant distance
    np.testing.assert_allclose(orbit[:, 1], 1.0, atol=1e-6)                     # looking at the cursor
    pt = target + np.array([0.05, -0.02, 0.04])
    for m, f_px, uv in zip(path.matrices, path.focal_px, got["uv"]):
        p = (pt - m[:3, 3]) @ m[:3, :3]
        expect = [160 + f_px * p[0] / -p[2], 90 - f_px * p[1] / -p[2]]
        np.testing.assert_allclose(uv, expect, atol=0.01)
