"""The "does it stick?" benchmark measures image-space sliding, in pixels of the clip.

Its drift compares two placements, each in its own world, so a solve that differs from the
truth by a similarity (another origin, orientation and scale, ground plane moved with it) must
show zero drift, while a camera that is really off must show the image offset it causes.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from backend.evaluation.raycast_scene import handheld_path
from shared_protocol import camera_file

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_composite", ROOT / "benchmarks" / "composite.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _doc(mats, ground_point=(0, 0, 0), ground_normal=(0, 0, 1), width=1920, height=1080):
    return camera_file.make_document(width, height, 24.0, mats, 0.875 * width, (width / 2, height / 2),
                                     ground_plane={"point": list(ground_point), "normal": list(ground_normal)})


def _similarity(scale: float, yaw_deg: float, shift) -> np.ndarray:
    a = np.radians(yaw_deg)
    s = np.eye(4)
    s[:3, :3] = scale * np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    s[:3, 3] = shift
    return s


def test_a_solve_off_by_a_similarity_does_not_drift():
    bench = _bench()
    mats = handheld_path(12)
    truth = _doc(mats)
    sim = _similarity(0.37, 25.0, [1.5, -2.0, 0.3])
    moved = np.array([sim @ m for m in mats])
    moved[:, :3, :3] /= 0.37  # camera-to-world rotations stay rotations
    solved = _doc(moved, ground_point=sim[:3, 3], ground_normal=(0, 0, 1))
    for u, v, f in bench.placements(1920, 1080, 12):
        d = bench.drift(solved, truth, u, v, f)
        assert d["frames"] == 12
        assert d["drift_max_px"] < 1e-6 and d["jitter_max_px"] < 1e-6, d


def test_a_camera_that_is_off_drifts_by_its_image_offset():
    bench = _bench()
    mats = handheld_path(12)
    truth = _doc(mats)
    off = mats.copy()
    # frame 5 turned by 0.01 rad about its own y axis: points near the image centre move by about
    # f * 0.01 px horizontally (f = 1680 px), the other frames not at all
    a = 0.01
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    off[5, :3, :3] = mats[5, :3, :3] @ rot
    solved = _doc(off)
    d = bench.drift(solved, truth, 960.0, 900.0, 0)
    f = 0.875 * 1920
    assert d["drift_max_px"] > 0.9 * f * a and d["drift_max_px"] < 1.3 * f * a, d
    assert abs(d["drift_mean_px"] - d["drift_max_px"] / 12) < 1e-6, d  # one frame of 12 moves
