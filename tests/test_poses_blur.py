"""Every frame of a shot gets a camera: frames the tracker loses to motion blur are registered by
re-tracking from their neighbours, and frames nothing can register are interpolated and flagged.

Scene: backend.evaluation.raycast_scene, 640x360 (the tracker's affine anchor mode, as at
1080p), focal 560 px, 30 frames of the hand-held path. Frames 12-15 are replaced by copies
smeared by a 21-px horizontal box blur (a fast pan during the exposure; a symmetric kernel
keeps each feature's centre where the sharp frame has it), which the tracker's anchor check
rejects; frame 22 is replaced by a uniform grey frame that nothing can register.

Tolerances from the image geometry, as in test_poses.py: one pixel subtends 1/f rad =
0.102 deg, so a frame registered through blur must be within 0.5 px of angle (median over the
clip) and 1 px (each blurred frame); the scene sits about 3.5 m away, so a camera-centre error
of 3.5 m / f = 6.3 mm shifts it by one pixel.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from backend.evaluation import raycast_scene
from backend.evaluation.pose_metrics import pose_errors
from backend.pipelines.poses.interpolate import frame_ranges, interpolated_stats
from backend.pipelines.poses.pipeline import SolveOptions, solve
from shared_protocol import camera_file

W, H, F = 640, 360, 560.0
PX_DEG = math.degrees(1.0 / F)
SCENE_DEPTH = 3.5
BLURRED = [12, 13, 14, 15]
BLANK = 22


@pytest.fixture(scope="module")
def blurred_clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("blur")
    truth = raycast_scene.write_clip(out, raycast_scene.handheld_path(30), F, W, H, video=False,
                                     supersample=1)
    kernel = np.zeros((21, 21), np.float32)
    kernel[10, :] = 1.0 / 21
    frames = out / "frames"
    for i in BLURRED:
        path = str(frames / f"{i:05d}.png")
        cv2.imwrite(path, cv2.filter2D(cv2.imread(path), -1, kernel, borderType=cv2.BORDER_REFLECT))
    cv2.imwrite(str(frames / f"{BLANK:05d}.png"), np.full((H, W, 3), 128, np.uint8))
    return frames, camera_file.matrices(truth)


@pytest.fixture(scope="module")
def blurred_solve(blurred_clip):
    frames, _ = blurred_clip
    return solve(frames, SolveOptions(threads=2, matcher="klt"))


def test_blurred_frames_are_registered_within_the_solve_tolerances(blurred_clip, blurred_solve):
    _, truth = blurred_clip
    sol = blurred_solve
    # The tracker loses the blurred frames; re-tracking from their neighbours registers them.
    assert sol.stats["retracked_frames"] == BLURRED
    assert sol.registered[BLURRED].all()
    assert np.isfinite(sol.reproj_error_px[BLURRED]).all()
    assert (sol.reproj_error_px[BLURRED] < 2.0).all()  # a 21-px smear: within 2 px
    m = pose_errors(sol.matrix_world, truth, sol.focal_px, F, sol.registered, sol.reproj_error_px)
    assert m["rot_err_deg_median"] < 0.5 * PX_DEG
    assert m["per_frame_rot_err_deg"][BLURRED].max() < 1.0 * PX_DEG
    assert m["per_frame_pos_err"][BLURRED].max() < SCENE_DEPTH / F
    assert m["ate_rmse"] < SCENE_DEPTH / F


def test_unregistrable_frame_is_interpolated_and_flagged(blurred_clip, blurred_solve):
    _, truth = blurred_clip
    sol = blurred_solve
    assert not sol.registered[BLANK] and sol.registered.sum() == 29
    assert sol.stats["interpolated_frames"] == [BLANK]
    assert sol.stats["interpolated"].startswith("1 of 30 frames") and "frames 22" in \
        sol.stats["interpolated"]
    doc = sol.to_document()
    assert doc["stats"]["interpolated_frames"] == [BLANK]
    assert [i for i, f in enumerate(doc["frames"]) if not f["registered"]] == [BLANK]
    # The interpolated pose is as good as the motion is smooth between frames 21 and 23.
    m = pose_errors(sol.matrix_world, truth, registered=sol.registered)
    assert m["per_frame_rot_err_deg"][BLANK] < 2 * PX_DEG


def test_interpolated_summary_line():
    reg = np.ones(117, bool)
    reg[42:47] = False
    reg[100] = False
    s = interpolated_stats(reg)
    assert s["interpolated_frames"] == [42, 43, 44, 45, 46, 100]
    assert s["interpolated"] == ("6 of 117 frames have no camera of their own; their poses are "
                                 "interpolated from the neighbours: frames 42-46, 100")
    assert interpolated_stats(np.ones(3, bool))["interpolated_frames"] == []
    assert frame_ranges([5, 1, 2, 3, 9]) == "1-3, 5, 9"
