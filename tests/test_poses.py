"""Camera solve against analytically rendered clips with exact ground truth.

Scene: backend.evaluation.raycast_scene (textured floor at z = 0, boxes, room walls), 320x180,
focal 280 px, 30 frames. Tolerances follow from the image geometry, not from past runs:

- one pixel subtends 1/f rad = 0.205 deg, so "matchmove grade" means rotation errors well
  under a pixel: median < 0.5 px of angle;
- a camera-centre error e at scene depth Z shifts points by f*e/Z px; the scene sits about
  Z = 3.5 m away, so ATE < Z/f (1 px of parallax) = 1.25 cm;
- a focal error df/f moves the image corner (r = 183 px from the centre) by r*df/f px: < 1 px
  there means focal error < 0.55 %;
- tracking noise is a fraction of a pixel, so the mean reprojection error must be < 0.5 px.
"""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

# a skip, not a collection error, without imageio_ffmpeg or pycolmap (the GPU machine): `pytest -m gpu tests/` collects
pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("pycolmap")

from backend.evaluation import raycast_scene  # noqa: E402
from backend.evaluation.pose_metrics import pose_errors, rotation_angle_deg  # noqa: E402
from backend.pipelines.poses.pipeline import SolveOptions, solve  # noqa: E402
from backend.progress import JobError, Progress  # noqa: E402
from shared_protocol import camera_file  # noqa: E402

W, H, F = 320, 180, 280.0
PX_DEG = math.degrees(1.0 / F)
SCENE_DEPTH = 3.5
CORNER_R = math.hypot(W / 2, H / 2)


@pytest.fixture(scope="session")
def handheld(tmp_path_factory):
    out = tmp_path_factory.mktemp("handheld")
    truth = raycast_scene.write_clip(out, raycast_scene.handheld_path(30), F, W, H)
    return out, truth


@pytest.fixture(scope="session")
def pan(tmp_path_factory):
    out = tmp_path_factory.mktemp("pan")
    truth = raycast_scene.write_clip(out, raycast_scene.pan_path(30, 30.0), F, W, H, video=False)
    return out, truth


@pytest.fixture(scope="session")
def handheld_solve(handheld):
    out, _ = handheld
    events = []
    sol = solve(out / "clip.mp4", SolveOptions(threads=2), Progress(events.append))
    return sol, events


def test_handheld_clip_matches_truth(handheld, handheld_solve):
    _, truth = handheld
    sol, _ = handheld_solve
    true_c2w = camera_file.matrices(truth)
    m = pose_errors(sol.matrix_world, true_c2w, sol.focal_px, F, sol.registered, sol.reproj_error_px)
    assert sol.registered.all()
    assert not sol.stats["rotation_only"]
    assert m["rot_err_deg_median"] < 0.5 * PX_DEG
    assert m["rot_err_deg_max"] < 1.0 * PX_DEG
    assert m["ate_rmse"] < SCENE_DEPTH / F
    assert m["focal_err_pct"] < 100.0 / CORNER_R
    assert m["reproj_mean_px"] < 0.5
    assert sol.principal_point_px == (W / 2, H / 2)


def test_handheld_world_is_the_ground_frame(handheld, handheld_solve):
    """The solved world must equal the true one (ground z = 0, +Z up) up to a turn about Z, a
    shift along the ground and the scale chosen by putting camera 0 at 1.6 m."""
    _, truth = handheld
    sol, _ = handheld_solve
    true_c2w = camera_file.matrices(truth)
    k = true_c2w[0, 2, 3] / 1.6
    assert sol.matrix_world[0, 2, 3] == pytest.approx(1.6, abs=1e-9)
    heights = sol.matrix_world[:, 2, 3] * k
    assert np.abs(heights - true_c2w[:, 2, 3]).max() < SCENE_DEPTH / F
    # Tilt of every camera's viewing axis against world up matches the truth.
    tilt = np.degrees(np.arccos(np.clip(-sol.matrix_world[:, 2, 2], -1, 1)))
    true_tilt = np.degrees(np.arccos(np.clip(-true_c2w[:, 2, 2], -1, 1)))
    assert np.abs(tilt - true_tilt).max() < PX_DEG
    # The origin lies on camera 0's optical axis (ray through the image centre).
    c0, axis = sol.matrix_world[0, :3, 3], -sol.matrix_world[0, :3, 2]
    foot = c0 + axis * (-c0 @ axis)
    assert np.linalg.norm(foot) < 1e-6
    # Points on the true floor (the majority lie within a few cm) sit at z ~ 0 in the solve.
    z = sol.points_xyz[:, 2] * k
    assert np.sum(np.abs(z) < 0.02) > 0.2 * len(z)


def test_progress_stages_and_stats(handheld_solve):
    sol, events = handheld_solve
    stages = [e["stage"] for e in events]
    for name in ("decode", "track", "keyframes", "sfm", "register", "bundle_adjust", "ground_plane"):
        assert name in stages
    assert events[-1]["stage"] == "ground_plane"
    assert sol.stats["n_registered"] == 30 and sol.stats["n_unregistered"] == 0
    assert sol.stats["n_keyframes"] < 30
    assert len(sol.points_xyz) == len(sol.points_rgb) == len(sol.track_length) > 100
    assert (sol.track_length >= 2).all()


def test_pan_is_solved_rotation_only(pan):
    out, truth = pan
    sol = solve(out / "frames", SolveOptions(threads=2, matcher="klt"))
    assert sol.stats["rotation_only"] is True
    true_c2w = camera_file.matrices(truth)
    centres = sol.matrix_world[:, :3, 3]
    assert np.abs(centres - centres[0]).max() < 1e-9
    m = pose_errors(sol.matrix_world, true_c2w, sol.focal_px, F, sol.registered)
    assert m["rot_err_deg_median"] < 0.5 * PX_DEG
    # Without parallax the focal length is seen only through the pan's perspective change and
    # trades off against k1: allow 2 px at the image corner.
    assert m["focal_err_pct"] < 200.0 / CORNER_R
    # Relative pan angle between first and last frame matches the truth (30 deg).
    rel = rotation_angle_deg(sol.matrix_world[0, :3, :3].T @ sol.matrix_world[-1, :3, :3])
    assert rel == pytest.approx(30.0, abs=PX_DEG)


def test_lens_distortion_is_estimated(tmp_path):
    """A barrel lens (k1 = -0.08, k2 = 0.01: 6 px at the corner) is detected and modelled so that
    every ray inside the image lands within a pixel of where the true lens puts it."""
    k1, k2 = -0.08, 0.01
    truth = raycast_scene.write_clip(tmp_path, raycast_scene.handheld_path(30), F, W, H, k1=k1, k2=k2)
    sol = solve(tmp_path / "clip.mp4", SolveOptions(threads=2))
    assert sol.stats["distortion_estimated"] is True
    rho = np.linspace(0.0, 0.7, 50)  # undistorted radius; the image corner is at about 0.68

    def radius(f, a, b):
        return f * rho * (1 + a * rho ** 2 + b * rho ** 4)

    assert np.abs(radius(sol.focal_px, sol.k1, sol.k2) - radius(F, k1, k2)).max() < 1.0
    m = pose_errors(sol.matrix_world, camera_file.matrices(truth), sol.focal_px, F, sol.registered,
                    sol.reproj_error_px)
    assert m["rot_err_deg_median"] < 0.5 * PX_DEG
    assert m["ate_rmse"] < SCENE_DEPTH / F


def test_undistorted_lens_is_not_given_distortion(handheld_solve):
    sol, _ = handheld_solve
    assert sol.stats["distortion_estimated"] is False and sol.k1 == 0.0 and sol.k2 == 0.0


def test_blank_frame_is_unregistered_and_interpolated(handheld, tmp_path):
    out, truth = handheld
    frames = tmp_path / "frames"
    shutil.copytree(out / "frames", frames)
    import cv2

    cv2.imwrite(str(frames / "00012.png"), np.zeros((H, W, 3), np.uint8))
    sol = solve(frames, SolveOptions(threads=2, matcher="klt"))
    assert not sol.registered[12]
    assert sol.registered.sum() == 29
    assert sol.stats["n_unregistered"] == 1
    assert sol.reproj_error_px[12] != sol.reproj_error_px[12]  # NaN
    true_c2w = camera_file.matrices(truth)
    m = pose_errors(sol.matrix_world, true_c2w, registered=sol.registered)
    # The interpolated pose is as good as the motion is smooth between frames 11 and 13.
    assert m["per_frame_rot_err_deg"][12] < 2 * PX_DEG


def test_frame_range_sources_tie_back_to_the_input(handheld):
    out, truth = handheld
    sol = solve(out / "clip.mp4", SolveOptions(threads=2, start=4, stride=2, max_frames=10))
    assert sol.sources == [str(i) for i in range(4, 24, 2)]
    true_c2w = camera_file.matrices(truth)[4:24:2]
    m = pose_errors(sol.matrix_world, true_c2w, sol.focal_px, F, sol.registered)
    assert sol.registered.all() and m["rot_err_deg_median"] < PX_DEG


def test_cancel_stops_the_solve(handheld):
    import threading

    from backend.progress import Cancelled

    out, _ = handheld
    cancel = threading.Event()
    seen = []

    def on_event(e):
        seen.append(e["stage"])
        if e["stage"] == "track":
            cancel.set()

    with pytest.raises(Cancelled):
        solve(out / "clip.mp4", SolveOptions(threads=1), Progress(on_event, cancel))
    assert "keyframes" not in seen


@pytest.mark.parametrize("source", ["clip.mp4", "frames"])
def test_cancel_while_frames_are_read_ahead_stops_the_readers(handheld, source):
    import threading

    from backend.progress import Cancelled

    out, _ = handheld
    cancel = threading.Event()
    tracked = []

    def on_event(e):
        if e["stage"] == "track" and e.get("stage_fraction", 0) > 0:
            tracked.append(e)
            if len(tracked) == 3:
                cancel.set()

    with pytest.raises(Cancelled) as err:
        solve(out / source, SolveOptions(threads=3), Progress(on_event, cancel, min_interval=0))
    # Checked while the traceback (and so the solve's frames) is still referenced: the readers
    # must have been stopped by the solve itself, not by garbage collection.
    assert err.traceback
    alive = [t.name for t in threading.enumerate() if t.name.startswith(("frame-", "register"))]
    assert alive == []


def _ffmpeg(*args):
    import subprocess

    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    *args], check=True)


@pytest.mark.parametrize("kind", ["blank", "short", "corrupt", "text", "empty"])
def test_bad_inputs_fail_with_one_line_naming_the_input(kind, tmp_path):
    path = tmp_path / f"{kind}.mp4"
    if kind == "blank":
        _ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=160x120:r=10", "-frames:v", "12",
                "-pix_fmt", "yuv420p", str(path))
        code = "featureless"
    elif kind == "short":
        _ffmpeg("-f", "lavfi", "-i", "testsrc=s=160x120:r=10", "-frames:v", "2",
                "-pix_fmt", "yuv420p", str(path))
        code = "too_few_frames"
    elif kind == "corrupt":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
        code = "bad_input"
    elif kind == "text":
        path.write_text("this is not a video\n")
        code = "bad_input"
    else:
        path.write_bytes(b"")
        code = "bad_input"
    with pytest.raises(JobError) as err:
        solve(path, SolveOptions(threads=1))
    assert err.value.code == code
    assert str(path) in err.value.message
    assert "\n" not in err.value.message
