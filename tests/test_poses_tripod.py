"""Tripod shots: pure rotation is detected over the whole clip and solved rotation-only with a
fixed centre, the first and last frames as good as the middle ones; translating clips, even with
a small baseline, are not taken for rotations.

Scenes: backend.evaluation.raycast_scene at 640x360 (the tracker's affine anchor mode, as for
HD footage), focal 560 px: one pixel subtends 1/f rad = 0.102 deg. Tolerances from that
geometry: every frame's orientation within 1 px of angle of the truth (after the one rotation
that best aligns the orientations: a pan fixes no world frame), and every frame-to-frame
rotation within 0.1 px of angle (tracking noise is a few hundredths of a pixel here), with no
exception for frames 0, 1 and the last.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from backend.evaluation import raycast_scene
from backend.evaluation.pose_metrics import pose_errors, rotation_angle_deg
from backend.pipelines.poses.pipeline import SolveOptions, solve
from backend.pipelines.poses.rotation import detect_pure_rotation, select_model
from backend.pipelines.poses.tracking import FrameObservations, Tracks
from shared_protocol import camera_file

W, H, F = 640, 360, 560.0
PX_DEG = math.degrees(1.0 / F)

# name: (frames, degrees of pan per frame, sideways travel in metres over the clip)
CLIPS = {
    "long_fast_pan": (30, 1.3, 0.0),
    "short_slow_pan": (8, 0.3, 0.0),
    "small_baseline": (24, 0.6, 0.05),
}


@pytest.fixture(scope="module", params=list(CLIPS))
def clip(request, tmp_path_factory):
    n, step, travel = CLIPS[request.param]
    c2w = raycast_scene.pan_path(n, step * (n - 1))
    c2w[:, 0, 3] += np.linspace(-0.5, 0.5, n) * travel
    out = tmp_path_factory.mktemp(request.param)
    raycast_scene.write_clip(out, c2w, F, W, H, video=False, supersample=1)
    sol = solve(out / "frames", SolveOptions(threads=2, matcher="klt"))
    return request.param, c2w, sol


def _relative_errors(est: np.ndarray, true: np.ndarray) -> np.ndarray:
    rel_e = np.einsum("nji,njk->nik", est[:-1, :3, :3], est[1:, :3, :3])
    rel_t = np.einsum("nji,njk->nik", true[:-1, :3, :3], true[1:, :3, :3])
    return rotation_angle_deg(np.einsum("nji,njk->nik", rel_t, rel_e))


def test_tripod_pans_are_rotation_only_with_good_ends(clip):
    name, truth, sol = clip
    if CLIPS[name][2]:
        # A translating camera, however small its baseline, is not a tripod.
        assert sol.stats["rotation_only"] is False
        assert sol.stats["model_selection"]["model"] == "fundamental"
        return
    assert sol.stats["rotation_only"] is True
    assert sol.stats["model_selection"]["model"] == "homography"
    assert sol.registered.all()
    centres = sol.matrix_world[:, :3, 3]
    assert np.abs(centres - centres[0]).max() < 1e-9
    m = pose_errors(sol.matrix_world, truth, sol.focal_px, F, sol.registered)
    per_frame = m["per_frame_rot_err_deg"]
    rel = _relative_errors(sol.matrix_world, truth)
    # The same bounds for every frame: 0, 1 and the last are no exception.
    assert per_frame.max() < 1.0 * PX_DEG, per_frame
    assert rel.max() < 0.1 * PX_DEG, rel
    assert max(per_frame[0], per_frame[1], per_frame[-1]) < 1.0 * PX_DEG
    assert max(rel[0], rel[-1]) < 0.1 * PX_DEG
    # The total pan angle matches the truth within a pixel of angle.
    pan = rotation_angle_deg(sol.matrix_world[0, :3, :3].T @ sol.matrix_world[-1, :3, :3])
    true_pan = rotation_angle_deg(truth[0, :3, :3].T @ truth[-1, :3, :3])
    assert pan == pytest.approx(true_pan, abs=PX_DEG)


def test_handheld_clip_is_not_rotation_only(tmp_path):
    n = 16
    truth = raycast_scene.write_clip(tmp_path, raycast_scene.handheld_path(n), 280.0, 320, 180,
                                     video=False, supersample=1)
    sol = solve(tmp_path / "frames", SolveOptions(threads=2, matcher="klt"))
    assert sol.stats["rotation_only"] is False
    assert sol.stats["model_selection"]["model"] == "fundamental"
    assert sol.registered.all()
    m = pose_errors(sol.matrix_world, camera_file.matrices(truth), registered=sol.registered)
    assert m["rot_err_deg_median"] < 0.5 * math.degrees(1 / 280.0)


def _synthetic_tracks(translation_per_frame: float, noise_px: float, seed: int = 0) -> Tracks:
    """Six frames of 800 points 2-6 m away seen by a camera yawing 1 deg per frame and moving
    sideways by ``translation_per_frame`` metres per frame (OpenCV axes)."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(800, 3))
    d[:, 2] = np.abs(d[:, 2]) * 2 + 1.0
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pts = d * rng.uniform(2.0, 6.0, (800, 1))
    tracks = Tracks(W, H)
    for i in range(6):
        a = np.radians(i * 1.0)
        r = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        v = (pts - [i * translation_per_frame, 0, 0]) @ r.T
        xy = F * v[:, :2] / v[:, 2:] + [W / 2, H / 2] + rng.normal(0, noise_px, (800, 2))
        ok = (xy[:, 0] > 0) & (xy[:, 0] < W) & (xy[:, 1] > 0) & (xy[:, 1] < H) & (v[:, 2] > 0)
        tracks.frames.append(FrameObservations(np.flatnonzero(ok), xy[ok],
                                               np.zeros((ok.sum(), 3), np.uint8)))
    return tracks


@pytest.mark.parametrize("noise_px", [0.05, 0.3, 1.0])
def test_model_selection_is_clip_wide_and_noise_independent(noise_px):
    """Pure rotation selects the homography at any noise level; a translation whose parallax
    over the clip's widest pair spans ten times the noise selects the fundamental matrix. The
    noise level is measured, not assumed."""
    keys = list(range(6))
    threshold = max(1.5, 3 * noise_px)
    rot = select_model(_synthetic_tracks(0.0, noise_px), keys, threshold)
    assert rot.homography and rot.n_pairs == 5
    assert rot.sigma_px == pytest.approx(noise_px, rel=0.25)
    # 5 frames x t: parallax between 2 m and 6 m points of F * 5 t * (1/2 - 1/6) px.
    t = 10.0 * noise_px / (F * 5 * (1 / 2 - 1 / 6))
    moving = select_model(_synthetic_tracks(t, noise_px), keys, threshold)
    assert not moving.homography
    assert moving.sigma_px == pytest.approx(noise_px, rel=0.25)


def test_translation_over_a_flat_floor_is_not_a_rotation():
    """Over a plane every pair is a homography, so GRIC alone cannot tell; the joint
    rotation-only fit must then miss the tracks. Camera 1.5 m above a floor seen 2-8 m ahead,
    yawing 1 deg and moving 10 cm sideways per frame; the same without the travel is a tripod."""
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(-3, 3, 1500), np.full(1500, 1.5), rng.uniform(2, 8, 1500)], 1)

    def floor(travel: float) -> Tracks:
        tracks = Tracks(W, H)
        for i in range(6):
            a = np.radians(i * 1.0)
            r = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
            v = (pts - [i * travel, 0, 0]) @ r.T
            xy = F * v[:, :2] / v[:, 2:] + [W / 2, H / 2] + rng.normal(0, 0.1, (1500, 2))
            ok = (xy[:, 0] > 0) & (xy[:, 0] < W) & (xy[:, 1] > 0) & (xy[:, 1] < H)
            tracks.frames.append(FrameObservations(np.flatnonzero(ok), xy[ok],
                                                   np.zeros((ok.sum(), 3), np.uint8)))
        return tracks

    stats: dict = {}
    assert detect_pure_rotation(floor(0.1), list(range(6)), None, 0.5, stats) is None
    assert stats["model_selection"]["model"] == "homography"
    assert stats["model_selection"]["rotation_fit_rms_px"] > 1.5
    assert detect_pure_rotation(floor(0.0), list(range(6)), None, 0.5) is not None
