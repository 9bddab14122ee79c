"""Camera solve on a Blender (Cycles) render from backend.synthetic.make_clip.

The hand-held clip is the session's shared render (``handheld_clip`` in conftest.py: 24 frames,
2 Cycles samples, also used by the batch test), so the hand-held test costs a camera solve; the
pan test renders its own short clip (12 frames, 8 samples). Tolerances as in test_poses.py, from the
image geometry: focal 266.7 px (30 mm lens on 36 mm, 320 px), so one pixel subtends 0.215 deg; the scene sits about 3 m from the camera (2.6 m horizontally,
1.4 m below), so a camera-centre error of 3 m / f = 1.1 cm shifts it by one pixel.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

# a skip, not a collection error, without imageio_ffmpeg or pycolmap (the GPU machine): `pytest -m gpu tests/` collects
pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("pycolmap")

from backend.evaluation.pose_metrics import pose_errors  # noqa: E402
from backend.pipelines.poses.pipeline import SolveOptions, solve  # noqa: E402
from shared_protocol import camera_file  # noqa: E402


@pytest.fixture(scope="module")
def clip(handheld_clip):
    return handheld_clip, camera_file.read(handheld_clip["truth"])


def test_blender_handheld(clip):
    paths, truth = clip
    f = truth["frames"][0]["focal_px"]
    px_deg = math.degrees(1.0 / f)
    sol = solve(paths["video"], SolveOptions(threads=2))
    t = camera_file.matrices(truth)
    m = pose_errors(sol.matrix_world, t, sol.focal_px, f, sol.registered, sol.reproj_error_px)
    assert sol.registered.all() and not sol.stats["rotation_only"]
    assert m["rot_err_deg_median"] < 0.5 * px_deg
    assert m["ate_rmse"] < 3.0 / f
    assert m["focal_err_pct"] < 100.0 / math.hypot(160, 90)
    assert m["reproj_mean_px"] < 0.5
    # Ground: truth z = 0 is the floor; camera heights agree at the scale the solve chose.
    k = t[0, 2, 3] / 1.6
    assert np.abs(sol.matrix_world[:, 2, 3] * k - t[:, 2, 3]).max() < 3.0 / f


def test_blender_pan_is_rotation_only(tmp_path_factory):
    """A 30-degree tripod pan in 12 frames (2.7 deg, 13 px a frame) at 8 samples (at 2 the pan is
    not told from a translation)."""
    from backend.synthetic import make_clip

    paths = make_clip(tmp_path_factory.mktemp("bpypan") / "clip", path="pan", width=320,
                      height=180, frames=12, samples=8)
    truth = camera_file.read(paths["truth"])
    f = truth["frames"][0]["focal_px"]
    sol = solve(paths["video"], SolveOptions(threads=2))
    assert sol.stats["rotation_only"] is True
    m = pose_errors(sol.matrix_world, camera_file.matrices(truth), sol.focal_px, f, sol.registered)
    assert m["rot_err_deg_median"] < 0.5 * math.degrees(1.0 / f)
    assert m["focal_err_pct"] < 200.0 / math.hypot(160, 90)  # 2 px at the corner, as in test_poses
