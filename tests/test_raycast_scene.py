"""The analytic ray-cast scene's depth and stereo outputs against closed-form geometry."""
from __future__ import annotations

import json

import cv2
import numpy as np

from backend.evaluation import raycast_scene
from backend.synthetic.paths import look_at


def test_depth_of_the_ground_seen_straight_down_is_the_camera_height():
    scene = raycast_scene.Scene()
    cam = look_at((-3.0, -3.0, 1.25), (-3.0, -2.999, 0.0))  # boxes are all at y > 1
    depth = scene.depth(cam, 40.0, 32, 24)
    # z-depth of a plane parallel to the image is constant: the camera's height
    np.testing.assert_allclose(depth, 1.25, rtol=0, atol=2e-3)


def test_depth_of_a_tilted_view_matches_the_ray_plane_intersection():
    scene = raycast_scene.Scene()
    eye, f, w, h = np.array([-3.0, -4.0, 1.0]), 30.0, 40, 30
    cam = look_at(eye, (-3.0, -2.0, 0.0))
    depth = scene.depth(cam, f, w, h)
    v, u = 25, 17  # a pixel below the horizon: on the ground
    d_cam = np.array([(u + 0.5 - w / 2) / f, -(v + 0.5 - h / 2) / f, -1.0])
    d = cam[:3, :3] @ d_cam
    t = -eye[2] / d[2]  # ray parameter at z = 0; z-depth equals t because d_cam has z = -1
    assert abs(depth[v, u] - t) < 1e-9 + 1e-6 * t


def test_stereo_clip_right_eye_is_the_camera_offset_along_its_x_axis(tmp_path):
    path = raycast_scene.handheld_path(3, travel=0.3)
    doc = raycast_scene.write_clip(tmp_path, path, 50.0, 48, 32, supersample=1, video=False,
                                   stereo=0.1, depth_every=2)
    assert doc["interaxial_m"] == 0.1
    assert json.loads((tmp_path / "truth.json").read_text())["interaxial_m"] == 0.1
    assert sorted(p.name for p in (tmp_path / "depth").iterdir()) == ["000000.npy", "000002.npy"]
    offset = path[1].copy()
    offset[:3, 3] += 0.1 * path[1][:3, 0]
    expect = raycast_scene.Scene().render(offset, 50.0, 48, 32, supersample=1)
    got = cv2.cvtColor(cv2.imread(str(tmp_path / "right" / "frames" / "00001.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(got, expect)
    left = cv2.imread(str(tmp_path / "frames" / "00001.png"))
    assert np.abs(left.astype(int) - got[..., ::-1]).mean() > 1.0  # the eyes differ
