"""Pose metrics on trajectories with known, constructed errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from backend.evaluation.pose_metrics import pose_errors, trajectory_extent, umeyama


def _traj(n=20, seed=0):
    rng = np.random.default_rng(seed)
    mats = np.tile(np.eye(4), (n, 1, 1))
    mats[:, :3, :3] = Rotation.from_rotvec(rng.normal(0, 0.3, (n, 3))).as_matrix()
    mats[:, :3, 3] = np.cumsum(rng.normal(0, 0.2, (n, 3)), axis=0)
    return mats


def _similar(mats, s, r, t):
    out = mats.copy()
    out[:, :3, :3] = r @ mats[:, :3, :3]
    out[:, :3, 3] = s * mats[:, :3, 3] @ r.T + t
    return out


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 3))
    r = Rotation.from_rotvec([0.3, -0.5, 1.1]).as_matrix()
    s, r2, t = umeyama(x, 2.5 * x @ r.T + [1, 2, 3])
    assert s == pytest.approx(2.5) and np.allclose(r2, r) and np.allclose(t, [1, 2, 3])


def test_exact_similarity_has_zero_error():
    truth = _traj()
    est = _similar(truth, 0.37, Rotation.from_rotvec([1.0, 0.2, -0.4]).as_matrix(), [5, -1, 2])
    m = pose_errors(est, truth, est_focal=1000, true_focal=1000)
    assert m["ate_rmse"] < 1e-9 and m["rot_err_deg_max"] < 1e-6
    assert m["scale"] == pytest.approx(1 / 0.37)
    assert m["focal_err_pct"] == 0.0 and m["fraction_registered"] == 1.0


def test_known_perturbations_are_measured():
    truth = _traj(40)
    est = truth.copy()
    # Every camera turned by 0.5 deg about its own axis (alternating sign: no global offset).
    for i in range(len(est)):
        sign = 1 if i % 2 else -1
        est[i, :3, :3] = est[i, :3, :3] @ Rotation.from_rotvec([0, 0, sign * math.radians(0.5)]).as_matrix()
    m = pose_errors(est, truth, est_focal=1010, true_focal=1000)
    assert m["rot_err_deg_median"] == pytest.approx(0.5, abs=0.02)
    assert m["focal_err_pct"] == pytest.approx(1.0)
    # Centre noise of known RMS.
    rng = np.random.default_rng(4)
    noisy = truth.copy()
    d = rng.normal(size=(40, 3))
    d *= 0.01 / np.sqrt((d ** 2).sum(1).mean())
    noisy[:, :3, 3] += d
    m = pose_errors(noisy, truth)
    assert 0.007 < m["ate_rmse"] < 0.011
    assert m["ate_pct"] == pytest.approx(100 * m["ate_rmse"] / trajectory_extent(truth[:, :3, 3]))


def test_straight_line_roll_is_still_measured():
    """Centres on a line leave roll about it free; camera axes must pin it down."""
    truth = np.tile(np.eye(4), (10, 1, 1))
    truth[:, 0, 3] = np.linspace(0, 1, 10)
    roll = Rotation.from_rotvec([math.radians(2.0), 0, 0]).as_matrix()
    est = truth.copy()
    est[:, :3, :3] = roll @ truth[:, :3, :3]
    m = pose_errors(est, truth)
    assert m["rot_err_deg_median"] < 1e-6  # a global rotation is aligned away, roll included
    est[5, :3, :3] = roll @ est[5, :3, :3]
    m = pose_errors(est, truth)
    assert m["rot_err_deg_max"] == pytest.approx(2.0, abs=0.3)


def test_pure_rotation_truth_aligns_rotation_only_and_counts_registered():
    truth = np.tile(np.eye(4), (6, 1, 1))
    truth[:, :3, :3] = Rotation.from_euler("z", np.linspace(0, 30, 6)[:, None], degrees=True).as_matrix()
    est = truth.copy()
    est[:, :3, :3] = Rotation.from_rotvec([0.1, 0.2, 0.3]).as_matrix() @ truth[:, :3, :3]
    m = pose_errors(est, truth, registered=[True] * 5 + [False], reproj_errors=[0.2] * 5 + [None])
    assert math.isnan(m["ate_pct"]) and m["rot_err_deg_max"] < 1e-6
    assert m["fraction_registered"] == pytest.approx(5 / 6) and m["reproj_mean_px"] == pytest.approx(0.2)


def test_centre_free_rotation_metrics_separate_orientations_from_the_trajectory():
    """Orientations exact, centres bent: the aligned rotation error picks up the bend, the
    orientation-aligned and frame-to-frame errors stay zero; a per-frame wobble shows in all."""
    truth = _traj(30, seed=3)
    est = truth.copy()
    # Bend the trajectory: rotate the second half's centres about the midpoint by 1 deg.
    bend = Rotation.from_rotvec([0, 0, math.radians(1.0)]).as_matrix()
    mid = est[15, :3, 3].copy()
    est[15:, :3, 3] = (est[15:, :3, 3] - mid) @ bend.T + mid
    m = pose_errors(est, truth)
    assert m["rot_err_deg_median"] > 0.05
    assert m["rot_err_deg_orientation_aligned_median"] < 1e-6 and m["rel_rot_err_deg_median"] < 1e-6
    # Cameras all facing one way, turned alternately by +-0.3 deg about their z axis: the
    # frame-to-frame error is 0.6 deg, the orientation-aligned one 0.3 deg.
    truth[:, :3, :3] = truth[0, :3, :3]
    wob = truth.copy()
    for i in range(len(wob)):
        sign = 1 if i % 2 else -1
        wob[i, :3, :3] = wob[i, :3, :3] @ Rotation.from_rotvec([0, 0, sign * math.radians(0.3)]).as_matrix()
    m = pose_errors(wob, truth)
    assert m["rot_err_deg_orientation_aligned_median"] == pytest.approx(0.3, abs=0.02)
    assert m["rel_rot_err_deg_median"] == pytest.approx(0.6, abs=1e-6)
