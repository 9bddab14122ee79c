"""``poses --method learned``: cameras from a pointmap network.

An oracle network returns the true pointmaps of a ray-cast clip (backend.evaluation.raycast_scene)
in the coordinates of each window's first camera, at a different arbitrary scale per window; the
solve must then reproduce the true cameras within the default path's tolerances (tests/test_poses.py
derives them: rotation median < 0.5 px of angle, max < 1 px, ATE < 1 px of parallax at the
scene's 3.5 m, focal < 1 px at the image corner, reprojection < 0.5 px). A tiny random network
exported by the test goes through the real loader; missing files are one-line errors.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from backend.evaluation import raycast_scene
from backend.evaluation.pose_metrics import pose_errors
from backend.models.oracles import OraclePointmaps
from backend.models.pointmaps import PointmapNetwork
from backend.pipelines.poses import learned
from backend.pipelines.poses.learned_windows import fit_focal, pixel_grid
from backend.pipelines.poses.pipeline import SolveOptions, solve
from backend.pipelines.poses.tracking import FrameObservations
from backend.progress import JobError
from shared_protocol import camera_file

W, H, F = 320, 180, 280.0
PX_DEG = math.degrees(1.0 / F)
SCENE_DEPTH = 3.5
CORNER_R = math.hypot(W / 2, H / 2)
NET = (45, 80)  # the network's input size (h, w): a quarter of the footage


def Oracle(scene, c2w):
    """True pointmaps in each window's first OpenCV camera, at a different scale per window."""
    return OraclePointmaps(scene, c2w, F, W, H, NET, window=8, memory=2)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("learned_clip")
    truth = raycast_scene.write_clip(out, raycast_scene.handheld_path(30), F, W, H)
    return out, truth


def _check_against_truth(sol, truth, rot_median_px=0.5, rot_max_px=1.0):
    true_c2w = camera_file.matrices(truth)[: len(sol.sources)]
    m = pose_errors(sol.matrix_world, true_c2w, sol.focal_px, F, sol.registered, sol.reproj_error_px)
    assert sol.registered.all()
    assert m["rot_err_deg_median"] < rot_median_px * PX_DEG
    assert m["rot_err_deg_max"] < rot_max_px * PX_DEG
    assert m["ate_rmse"] < SCENE_DEPTH / F
    assert m["focal_err_pct"] < 100.0 / CORNER_R
    return m


def test_oracle_network_reproduces_the_true_cameras(clip, monkeypatch):
    """Tracks refine the network's cameras; frames 12-14 lose their tracks (as blurred frames
    would) and keep their network poses, moved into the adjusted world."""
    out, truth = clip
    adjust = learned._adjust

    def without_tracks_in_12_to_14(tracks, *args):
        for p in (12, 13, 14):
            f = tracks.frames[p]
            tracks.frames[p] = FrameObservations(f.ids[:0], f.xy[:0], f.rgb[:0])
        return adjust(tracks, *args)

    monkeypatch.setattr(learned, "_adjust", without_tracks_in_12_to_14)
    oracle = Oracle(raycast_scene.Scene(), camera_file.matrices(truth))
    sol = solve(out / "clip.mp4", SolveOptions(threads=2, method="learned", pose_model=oracle))
    m = _check_against_truth(sol, truth)
    assert m["reproj_mean_px"] < 0.5
    assert sol.stats["method"] == "learned" and sol.stats["learned_bundle_adjusted"] is True
    assert sol.stats["learned_unadjusted_frames"] == [12, 13, 14]
    assert m["per_frame_rot_err_deg"][12:15].max() < 1.0 * PX_DEG
    assert m["per_frame_pos_err"][12:15].max() < SCENE_DEPTH / F
    # Causal windows with keyframe memory: 8 new frames, then the newest keyframe (the
    # coordinate frame) and the one before it followed by 6 new frames.
    assert oracle.calls[0] == list(range(8))
    assert oracle.calls[1] == [7, 0] + list(range(8, 14))
    assert oracle.calls[2] == [13, 7] + list(range(14, 20))
    assert sorted({p for c in oracle.calls for p in c}) == list(range(30))
    # The same world as the default path: ground z = 0, the first camera at the 1.6 m guess.
    assert sol.matrix_world[0, 2, 3] == pytest.approx(1.6, abs=1e-9)
    assert sol.stats["ground_plane_found"]


def test_network_cameras_alone_without_tracks(clip, monkeypatch):
    """Footage the tracker cannot follow: the network's cameras (PnP on the pointmaps) are the
    result; exact pointmaps then give the true cameras on their own."""
    out, truth = clip
    monkeypatch.setattr(learned, "MIN_POINTS", 10 ** 9)
    oracle = Oracle(raycast_scene.Scene(), camera_file.matrices(truth))
    sol = solve(out / "clip.mp4", SolveOptions(threads=2, method="learned", pose_model=oracle,
                                               max_frames=16))
    assert len(sol.sources) == 16 and sol.stats["learned_bundle_adjusted"] is False
    _check_against_truth(sol, truth)
    assert sol.stats["learned_pnp_rms_px"] < 0.1
    assert len(sol.points_xyz) > 1000


def test_focal_fit_of_a_true_pointmap():
    scene = raycast_scene.Scene()
    c2w = raycast_scene.handheld_path(3)
    oracle = Oracle(scene, c2w)
    pts, conf = oracle([np.zeros((*NET, 3), np.uint8)] * 2, [0, 1])
    f, res = fit_focal(pts[0], conf[0], pixel_grid(*NET, W, H), (W / 2, H / 2))
    # Exact up to the float32 pointmaps (relative rounding 6e-8: 1e-4 px at the corner).
    assert f == pytest.approx(F, rel=1e-6) and res < 1e-3


class TinyPointmapNet(torch.nn.Module):
    """A randomly initialised stand-in with the network's I/O: (1,T,3,h,w) -> (1,T,h,w,3), (1,T,h,w)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        b, t, c, h, w = x.shape
        y = self.conv(x.reshape(b * t, c, h, w)).reshape(b, t, 4, h, w)
        pts = y[:, :, :3].permute(0, 1, 3, 4, 2)
        return pts, torch.sigmoid(y[:, :, 3]) + 0.01


class EchoNet(torch.nn.Module):
    """Returns its input as the pointmaps: shows exactly what the loader fed the network."""

    def forward(self, x):
        return x.permute(0, 1, 3, 4, 2).contiguous()


def _save(folder, net, fmt, window=4, memory=1):
    (folder / "poses").mkdir(parents=True, exist_ok=True)
    example = torch.rand(1, window, 3, *NET)
    if fmt == "export":
        torch.export.save(torch.export.export(net.eval(), (example,)), str(folder / "poses" / "model.pt2"))
    else:
        torch.jit.save(torch.jit.trace(net.eval(), example), str(folder / "poses" / "model.pt"))
    (folder / "poses" / "poses.json").write_text(json.dumps(
        {"input_size": list(NET), "window": window, "memory": memory,
         "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}))
    return folder


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("fmt", ["export", "torchscript"])
def test_loader_feeds_the_normalised_resized_window(tmp_path, fmt):
    net = PointmapNetwork(_save(tmp_path, EchoNet(), fmt))
    assert net.window == 4 and net.memory == 1 and net.input_size == NET
    rng = np.random.default_rng(0)
    frames = [np.full((H, W, 3), rng.integers(0, 256, 3), np.uint8) for _ in range(4)]
    frames[0][:, : W // 2] = (255, 0, 0)
    pts, conf = net(frames, [0, 1, 2, 3])
    assert pts.shape == (4, *NET, 3) and conf.shape == (4, *NET) and (conf == 1).all()
    mean, std = np.array([0.5, 0.4, 0.3]), np.array([0.2, 0.25, 0.3])
    for k in range(1, 4):
        np.testing.assert_allclose(pts[k], np.broadcast_to((frames[k][0, 0] / 255 - mean) / std, pts[k].shape),
                                   atol=1e-5)
    np.testing.assert_allclose(pts[0][:, :38], np.broadcast_to((np.array([1, 0, 0]) - mean) / std, (45, 38, 3)),
                               atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tiny_random_network_runs_end_to_end_and_garbage_is_a_clear_error(tmp_path, clip):
    out, _ = clip
    torch.manual_seed(0)
    weights = _save(tmp_path, TinyPointmapNet(), "export")
    net = PointmapNetwork(weights)
    frames = [np.zeros((H, W, 3), np.uint8)] * 4
    pts, conf = net(frames, list(range(4)))
    assert pts.shape == (4, *NET, 3) and np.isfinite(pts).all() and (conf > 0).all()
    with pytest.raises(JobError) as err:
        solve(out / "clip.mp4", SolveOptions(threads=2, method="learned", weights_dir=str(weights),
                                             max_frames=9))
    assert err.value.code == "bad_model_output"
    assert "not a pointmap of the frames" in err.value.message and "\n" not in err.value.message


def test_non_finite_output_is_a_clear_error(clip):
    out, truth = clip

    oracle = Oracle(raycast_scene.Scene(), camera_file.matrices(truth))

    def nans(frames, positions):
        pts, conf = oracle(frames, positions)
        pts[0, 3, 4] = np.nan
        return pts, conf

    nans.window, nans.memory, nans.input_size = 8, 2, NET

    with pytest.raises(JobError, match="non-finite") as err:
        solve(out / "clip.mp4", SolveOptions(threads=2, method="learned", max_frames=8,
                                             pose_model=nans))
    assert err.value.code == "bad_model_output"


def test_missing_files_are_one_line_errors(tmp_path):
    with pytest.raises(JobError) as err:
        PointmapNetwork(tmp_path)
    msg = err.value.message
    assert err.value.code == "missing_weights" and "\n" not in msg
    assert str(tmp_path / "poses" / "model.pt2") in msg and "weights/README.md" in msg
    _save(tmp_path, EchoNet(), "export")
    (tmp_path / "poses" / "poses.json").unlink()
    with pytest.raises(JobError) as err:
        PointmapNetwork(tmp_path)
    assert err.value.code == "missing_weights" and str(tmp_path / "poses" / "poses.json") in err.value.message


def test_job_option(tmp_path):
    from backend.jobs.poses import options_from_params, run
    from backend.progress import Progress

    opts = options_from_params({"input": "/x.mp4", "method": "learned", "weights": str(tmp_path)})
    assert opts.method == "learned" and opts.weights_dir == str(tmp_path)
    assert options_from_params({"input": "/x.mp4"}).method == "tracks"
    with pytest.raises(JobError) as err:
        options_from_params({"input": "/x.mp4", "method": "magic"})
    assert err.value.code == "bad_params"
    # The model is loaded before any frame is decoded: a missing file fails at once.
    with pytest.raises(JobError) as err:
        run({"input": str(tmp_path / "missing.mp4"), "method": "learned", "weights": str(tmp_path)},
            tmp_path / "out", Progress())
    assert err.value.code == "missing_weights"
