"""Unit checks of the camera solve's geometric helpers against constructed truth."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from backend.evaluation.raycast_scene import look_at
from backend.pipelines.poses import ground
from backend.pipelines.poses.interpolate import fill_unregistered
from backend.pipelines.poses.rotation import fit_rotation_only
from backend.pipelines.poses.tracking import FrameObservations, Tracks

CV = np.diag([1.0, -1.0, -1.0])


def _cv(m):
    out = m.copy()
    out[:3, :3] = m[:3, :3] @ CV
    return out


def test_ground_plane_is_found_below_the_cameras_and_becomes_z0():
    """Solve-frame data = a known similarity of a z-up world: floor (z=0) points, a box top at
    z=0.8 with more points than the floor has, a wall, and cameras 1.6 m up looking down."""
    rng = np.random.default_rng(0)
    floor = np.c_[rng.uniform(-3, 3, 400), rng.uniform(0, 6, 400), rng.normal(0, 0.003, 400)]
    top = np.c_[rng.uniform(-0.3, 0.3, 500), rng.uniform(2, 2.6, 500), np.full(500, 0.8)]
    wall = np.c_[rng.uniform(-3, 3, 300), np.full(300, 6.0), rng.uniform(0, 3, 300)]
    pts = np.concatenate([floor, top, wall])
    cams = np.array([_cv(look_at((x, -1.0, 1.6), (0.0, 2.5, 0.3))) for x in np.linspace(-0.5, 0.5, 5)])
    s, r = 0.37, Rotation.from_rotvec([0.4, -1.1, 0.3]).as_matrix()
    t = np.array([3.0, -2.0, 5.0])
    pts_s = s * pts @ r.T + t
    cams_s = cams.copy()
    cams_s[:, :3, :3] = r @ cams[:, :3, :3]
    cams_s[:, :3, 3] = s * cams[:, :3, 3] @ r.T + t
    plane = ground.fit_ground_plane(pts_s, cams_s)
    assert plane.found
    assert np.degrees(np.arccos(plane.normal @ (r @ [0, 0, 1]))) < 0.5
    scale, rot, origin = ground.world_from_solve(plane, cams_s[0])
    mats, out_pts = ground.apply_world(scale, rot, origin, cams_s, pts_s)
    assert mats[0, 2, 3] == pytest.approx(1.6)
    assert np.abs(out_pts[:400, 2]).max() < 0.02  # the floor is z = 0 (noise 3 mm)
    assert np.allclose(mats[:, 2, 3], cams[:, 2, 3], atol=0.01)  # same scale as the truth here
    # Origin: where camera 0's optical axis (-Z in Blender axes) meets the ground.
    c0, axis = mats[0, :3, 3], -mats[0, :3, 2]
    hit = c0 + axis * (-c0[2] / axis[2])
    assert np.linalg.norm(hit[:2]) < 1e-9
    # +X is camera 0's right vector projected onto the ground.
    assert abs(mats[0, 1, 0]) < 1e-9 and mats[0, 0, 0] > 0.99


def test_interpolation_of_unregistered_frames():
    a = np.eye(4)
    b = np.eye(4)
    b[:3, :3] = Rotation.from_rotvec([0, 0, np.radians(40)]).as_matrix()
    b[:3, 3] = [2.0, 0, 0]
    out = fill_unregistered({1: a, 5: b}, 7)
    mid = out[3]
    assert np.degrees(Rotation.from_matrix(mid[:3, :3]).magnitude()) == pytest.approx(20.0)
    assert np.allclose(mid[:3, 3], [1.0, 0, 0])
    assert np.allclose(out[0], a) and np.allclose(out[6], b)


def test_rotation_only_fit_on_exact_bearings():
    """Tracks generated from known directions and a 20 deg pan: focal and rotations recovered."""
    rng = np.random.default_rng(1)
    w, h, f = 640, 360, 500.0
    dirs = rng.normal(size=(600, 3))
    dirs[:, 2] = np.abs(dirs[:, 2]) + 1.0
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    tracks = Tracks(w, h)
    rots = [Rotation.from_euler("y", a, degrees=True).as_matrix() for a in np.linspace(0, 20, 6)]
    for i, r in enumerate(rots):
        v = dirs @ r.T
        xy = f * v[:, :2] / v[:, 2:] + [w / 2, h / 2] + rng.normal(0, 0.2, (600, 2))
        ok = (xy[:, 0] > 0) & (xy[:, 0] < w) & (xy[:, 1] > 0) & (xy[:, 1] < h)
        tracks.frames.append(FrameObservations(np.flatnonzero(ok), xy[ok], np.zeros((ok.sum(), 3), np.uint8)))
    model = fit_rotation_only(tracks, list(range(6)), None)
    assert model.focal == pytest.approx(f, rel=0.005)
    rel = model.rotations[5] @ model.rotations[0].T
    assert np.degrees(Rotation.from_matrix(rel).magnitude()) == pytest.approx(20.0, abs=0.05)
    assert model.rms_px < 0.5
