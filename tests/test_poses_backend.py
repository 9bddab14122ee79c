"""The solve's back end on constructed scenes with known cameras: PnP registration (threads,
correspondence subsets), the all-frame model (observation subsampling) and the reprojection
errors (checked against pycolmap's own projection)."""
from __future__ import annotations

import numpy as np
import pytest

# a skip, not a collection error, without pycolmap (the GPU machine): `pytest -m gpu tests/` collects
pycolmap = pytest.importorskip("pycolmap")
from scipy.spatial.transform import Rotation  # noqa: E402

from backend.pipelines.poses import bundle, register  # noqa: E402
from backend.pipelines.poses.tracking import FrameObservations, TrackLookup, Tracks  # noqa: E402

W, H, F = 640, 480, 500.0
NOISE_PX = 0.2


def _scene(n_frames=12, n_points=300, outliers=0.1, k1=0.0, k2=0.0, seed=0):
    """Points in a box 4-8 units ahead, cameras sliding sideways with a slow yaw; every frame
    observes every point (track id = point index + 1000) with pixel noise, and a fraction of
    observations are gross outliers (20-40 px off)."""
    rng = np.random.default_rng(seed)
    xyz = np.column_stack([rng.uniform(-3, 3, n_points), rng.uniform(-2, 2, n_points),
                           rng.uniform(4, 8, n_points)])
    cam = pycolmap.Camera(model="RADIAL", width=W, height=H, params=[F, W / 2, H / 2, k1, k2],
                          camera_id=1)
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(cam)
    t2p = {}
    for i, p in enumerate(xyz):
        t2p[i + 1000] = rec.add_point3D(p, pycolmap.Track(), np.zeros(3, np.uint8))
    poses, tracks = {}, Tracks(W, H)
    for k in range(n_frames):
        r = Rotation.from_euler("y", 0.5 * k, degrees=True).as_matrix()
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(r), -r @ np.array([0.1 * k, 0.0, 0.0]))
        cam_pts = xyz @ r.T + pose.translation
        xy = cam.img_from_cam(cam_pts) + rng.normal(0, NOISE_PX, (n_points, 2))
        bad = rng.random(n_points) < outliers
        xy[bad] += rng.uniform(20, 40, (bad.sum(), 2)) * rng.choice([-1, 1], (bad.sum(), 2))
        ids = np.arange(n_points, dtype=np.int64) + 1000
        tracks.frames.append(FrameObservations(ids, xy, np.zeros((n_points, 3), np.uint8)))
        poses[k] = pose
    return rec, tracks, t2p, poses


def _angle_deg(a: pycolmap.Rigid3d, b: pycolmap.Rigid3d) -> float:
    d = a.rotation.matrix().T @ b.rotation.matrix()
    return float(np.degrees(np.arccos(np.clip((np.trace(d) - 1) / 2, -1, 1))))


def _centre(p: pycolmap.Rigid3d) -> np.ndarray:
    return -p.rotation.matrix().T @ p.translation


def test_register_frames_in_threads_and_on_a_subset_recovers_the_poses():
    rec, tracks, t2p, truth = _scene()
    frames = list(range(len(tracks)))
    serial = register.register_frames(rec, tracks, t2p, frames, threads=1, max_points=10_000)
    threaded = register.register_frames(rec, tracks, t2p, frames, threads=3, max_points=10_000)
    subset = register.register_frames(rec, tracks, t2p, frames, threads=3, max_points=60)
    # 0.2 px noise at f = 500 is 4e-4 rad per point; 60+ inliers spread over the image pin the
    # pose to a few thousandths of a degree. 0.05 deg / 5 mm leaves a wide margin, while a
    # pose pulled by the 10 % outliers would be off by far more.
    for got in (serial, threaded, subset):
        assert sorted(got) == frames
        for k in frames:
            assert _angle_deg(got[k], truth[k]) < 0.05
            assert np.linalg.norm(_centre(got[k]) - _centre(truth[k])) < 0.005
    for k in frames:  # the thread count does not change the (seeded) result
        assert np.allclose(serial[k].matrix(), threaded[k].matrix(), atol=1e-12)


def test_register_frames_skips_frames_without_enough_points():
    rec, tracks, t2p, _ = _scene(n_frames=3)
    few = {tid: pid for tid, pid in list(t2p.items())[:10]}
    assert register.register_frames(rec, tracks, few, [0, 1, 2], threads=2) == {}


def test_track_lookup_finds_points_of_known_tracks_only():
    lookup = TrackLookup({5: 50, 2: 20, 9: 90})
    idx, pids = lookup.points(np.array([1, 2, 3, 9, 10, 5], np.int64))
    assert idx.tolist() == [1, 3, 5] and pids.tolist() == [20, 90, 50]
    empty = TrackLookup({})
    assert len(empty.points(np.array([1, 2], np.int64))[0]) == 0


def test_build_model_subsamples_long_tracks_evenly():
    rec, tracks, t2p, poses = _scene(n_frames=60, n_points=120, outliers=0.0)
    # A second track id seen in the same frames that maps to an existing point must not give
    # that point two observations in one frame.
    for obs in tracks.frames:
        obs.ids = np.append(obs.ids, 5000)
        obs.xy = np.vstack([obs.xy, obs.xy[0]])
        obs.rgb = np.vstack([obs.rgb, obs.rgb[0]])
    t2p[5000] = t2p[1000]
    model = bundle.build_model(rec, tracks, poses, t2p, max_obs_per_point=8)
    full, seen = model.rec, model.frames_seen
    assert not model.pending.any() and len(model.table) == full.compute_num_observations()
    assert full.num_points3D() == 120 and full.num_reg_images() == 60
    per_image = np.zeros(61, int)
    for pid, point in full.points3D.items():
        images = [el.image_id for el in point.track.elements]
        assert len(set(images)) == len(images)
        assert 7 <= len(images) <= 8  # every 8th of 60 frames, offset by the point id
        assert seen[pid] == 60
        np.add.at(per_image, images, 1)
    # The offsets spread the kept observations over the frames: each keeps about 120/8.
    assert per_image[1:].min() >= 10 and per_image[1:].max() <= 20


def test_reprojection_errors_agree_with_pycolmap_projection():
    rec, tracks, t2p, poses = _scene(n_frames=5, n_points=80, k1=-0.08, k2=0.02)
    full = bundle.build_model(rec, tracks, poses, t2p).rec
    rows = bundle.observation_errors(full)
    assert len(rows) == full.compute_num_observations()
    for iid, idx, pid, err in rows[::7]:
        image = full.images[int(iid)]
        proj = image.project_point(full.points3D[int(pid)].xyz)
        want = np.linalg.norm(proj - image.points2D[int(idx)].xy)
        assert err == pytest.approx(want, abs=1e-6)
    # Without outliers every error is the injected pixel noise.
    clean_rec, clean_tracks, clean_t2p, clean_poses = _scene(n_frames=5, n_points=80,
                                                             outliers=0.0)
    clean = bundle.build_model(clean_rec, clean_tracks, clean_poses, clean_t2p).rec
    err = bundle.observation_errors(clean)[:, 3]
    assert np.sqrt(np.mean(err ** 2)) == pytest.approx(NOISE_PX * np.sqrt(2), rel=0.15)


def _observation_set(rows) -> set:
    return {tuple(r) for r in np.asarray(rows)[:, :3].astype(np.int64).tolist()}


def test_adjust_adds_held_back_observations_after_the_robust_round_except_outliers():
    rec, tracks, t2p, poses = _scene(n_frames=30, n_points=150, outliers=0.1, seed=3)
    rng = np.random.default_rng(4)
    for k in range(2, 30):  # start from poses a little off, as PnP leaves them
        r = Rotation.from_rotvec(rng.normal(0, 0.0005, 3)).as_matrix()
        poses[k] = pycolmap.Rigid3d(pycolmap.Rotation3d(r @ poses[k].rotation.matrix()),
                                    poses[k].translation + rng.normal(0, 0.002, 3))
    model = bundle.build_model(rec, tracks, poses, t2p, robust_obs_per_point=6)
    per_point = np.bincount(model.table[~model.pending, 2].astype(np.int64))
    assert len(model.table) == 150 * 30 and per_point[per_point > 0].max() == 6
    assert model.rec.compute_num_observations() == int((~model.pending).sum())
    gross = bundle.reprojection_errors(model.rec, model.table) > 15.0  # injected 20-40 px
    counts, kept = bundle.adjust(model.rec, fixed_focal=True, threads=1, refine_distortion=False,
                                 table=model.table, pending=model.pending)
    # Every clean observation, held back or not, is in the final model; no outlier is.
    assert _observation_set(kept) == _observation_set(bundle.observation_table(model.rec))
    assert _observation_set(kept) == _observation_set(model.table[~gross])
    assert counts["observations_removed"] == int(gross.sum())
    # The final round is the same problem as adjusting with every observation from the start,
    # so it reaches the same poses to the solver's stopping tolerance: a small fraction of
    # what the 0.2 px noise leaves (about 0.015 deg and 1.5e-3 units here).
    everything = bundle.build_model(rec, tracks, poses, t2p, robust_obs_per_point=None)
    assert not everything.pending.any()
    bundle.adjust(everything.rec, fixed_focal=True, threads=1, refine_distortion=False)
    for k in range(30):
        a = model.rec.images[k + 1].cam_from_world()
        b = everything.rec.images[k + 1].cam_from_world()
        assert _angle_deg(a, b) < 1e-3 and np.linalg.norm(_centre(a) - _centre(b)) < 3e-4
