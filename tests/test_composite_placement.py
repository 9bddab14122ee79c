"""Placement math of the main job against known cameras.

The anchor is the ground point seen at pixel (U, V) of frame N. Checked against the true
cameras of the committed sample clip (the anchor, projected back through camera N, must land
on (U, V); a known ground point projected by OpenCV must give back that point), and with
radial distortion against OpenCV's projector. Everything is float64, so the tolerances are a
few orders above double rounding (1e-6 px, 1e-7 m) and far below what a wrong convention
(half-pixel offset, flipped axis, distortion applied the wrong way) would produce. The truth's
rotations are stored from float32, orthonormal to ~1e-7, and OpenCV re-orthonormalises them
(Rodrigues), so comparisons with OpenCV allow f * 1e-7 * (a few) ~ 1e-4 px.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.pipelines.composite import placement

SAMPLES = Path(__file__).resolve().parents[1] / "backend" / "samples"
TRUTH = json.loads((SAMPLES / "sample_truth.json").read_text())
OPENCV_PX = 1e-4


def test_truth_rotations_are_orthonormal_to_float32_precision():
    for fr in TRUTH["frames"]:
        r = np.asarray(fr["matrix_world"])[:3, :3]
        assert np.abs(r.T @ r - np.eye(3)).max() < 5e-7


def opencv_project(frame: dict, points, k1=0.0, k2=0.0) -> np.ndarray:
    c2w = np.asarray(frame["matrix_world"], float) @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV camera axes
    w2c = np.linalg.inv(c2w)
    rvec, _ = cv2.Rodrigues(w2c[:3, :3])
    f = frame["focal_px"]
    cx, cy = frame["principal_point_px"]
    K = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])
    # OpenCV's pixel centres are at integer coordinates; the project's at +0.5: same K, the
    # convention only matters for image sampling, not for this continuous projection.
    uv, _ = cv2.projectPoints(np.asarray(points, float).reshape(-1, 1, 3), rvec, w2c[:3, 3], K,
                              np.array([k1, k2, 0.0, 0.0]))
    return uv.reshape(-1, 2)


@pytest.mark.parametrize("frame,u,v", [(0, 240.0, 225.0), (0, 17.25, 260.5), (20, 400.0, 180.0), (47, 100.0, 200.0)])
def test_anchor_projects_back_to_the_pixel_under_true_cameras(frame, u, v):
    anchor = placement.anchor_from_pixel(TRUTH, u, v, frame)
    assert abs(anchor[2]) < 1e-9  # on the truth's ground plane z = 0
    fr = placement.frame_for_video_index(TRUTH, frame)
    px, depth = placement.PinholeCamera.from_frame(fr).project(anchor)
    assert depth[0] > 0
    assert np.abs(px[0] - [u, v]).max() < 0.01
    assert np.abs(px[0] - [u, v]).max() < 1e-6
    np.testing.assert_allclose(opencv_project(fr, anchor)[0], [u, v], atol=OPENCV_PX)


def test_known_ground_point_is_recovered_from_its_pixel():
    fr = placement.frame_for_video_index(TRUTH, 12)
    ground_point = np.array([0.3, -0.4, 0.0])
    u, v = opencv_project(fr, ground_point)[0]
    # 1e-4 px at ~3 m and f = 400 px is ~1e-6 m on the ground (grazing rays stretch it a few times)
    np.testing.assert_allclose(placement.anchor_from_pixel(TRUTH, u, v, 12), ground_point, atol=1e-5)


def test_default_pixel_is_the_centre_of_the_lower_third():
    assert placement.default_pixel(480, 270) == (240.0, 225.0)


def test_radial_distortion_matches_opencv():
    doc = json.loads(json.dumps(TRUTH))
    doc["distortion"] = {"model": "radial2", "k1": -0.12, "k2": 0.03}
    for frame, (u, v) in ((0, (30.0, 250.0)), (30, (460.0, 200.0))):
        anchor = placement.anchor_from_pixel(doc, u, v, frame)
        fr = placement.frame_for_video_index(doc, frame)
        np.testing.assert_allclose(opencv_project(fr, anchor, -0.12, 0.03)[0], [u, v], atol=OPENCV_PX)
        undistorted = placement.anchor_from_pixel(TRUTH, u, v, frame)
        assert np.linalg.norm(anchor - undistorted) > 1e-3  # the distortion really moved the ray


def test_anchor_track_follows_every_frame():
    anchor = placement.anchor_from_pixel(TRUTH, 240.0, 225.0, 0)
    frames, px = placement.anchor_track(TRUTH, anchor)
    assert frames.tolist() == list(range(48))
    for i in (0, 23, 47):
        fr = placement.frame_for_video_index(TRUTH, i)
        np.testing.assert_allclose(px[i], opencv_project(fr, anchor)[0], atol=OPENCV_PX)


def test_pixel_above_the_horizon_is_refused():
    doc = json.loads(json.dumps(TRUTH))
    level = [[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 1.6], [0, 0, 0, 1.0]]  # looking along +Y, level
    doc["frames"][0]["matrix_world"] = level
    assert placement.anchor_from_pixel(doc, 240.0, 136.0, 0)[1] > 100  # just below the horizon: far away
    with pytest.raises(placement.PlacementError, match="does not meet the ground plane"):
        placement.anchor_from_pixel(doc, 240.0, 134.0, 0)


@pytest.mark.parametrize("u,v,frame,message", [
    (600.0, 100.0, 0, "outside the 480x270 frame"),
    (240.0, 225.0, 99, "frame 99 has no solved camera"),
])
def test_unplaceable_pixels_are_refused(u, v, frame, message):
    with pytest.raises(placement.PlacementError, match=message):
        placement.anchor_from_pixel(TRUTH, u, v, frame)
