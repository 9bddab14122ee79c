"""World scale: every way of setting it recovers the true metric scale of a known scene.

Truth: the ray-cast scene (backend.evaluation.raycast_scene; ground z = 0, boxes of known size,
metres) seen by a hand-held camera 0.9 m above the floor. The solve's default guess puts that
camera at 1.6 m, so the world starts 1.78x too large.

- On the truth itself re-scaled by a wrong factor (a solve whose only error is scale) every
  method must give back the factor exactly (to float rounding): the pixels an artist would
  pick are the true corners projected by the true cameras (``placement.PinholeCamera``, a
  separate implementation from the rays being tested), with lens distortion.
- On a real solve of the rendered clip every method must recover the true scale within 1 %.
  Budget: the solve's camera centres are good to ~Z/f = 1 px of parallax (1.25 cm at 3.5 m,
  see test_poses.py) and its ground plane to a few mm, which at the references' size
  (0.35-1.2 m heights and distances, 0.9 m camera height) is well under 1 %.
"""
from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest

from backend.evaluation import raycast_scene
from backend.evaluation.pose_metrics import umeyama
from backend.jobs import composite as composite_job
from backend.jobs import poses as poses_job
from backend.jobs import scale as scale_job
from backend.pipelines.composite.placement import PinholeCamera
from backend.pipelines.poses import scale as bscale
from backend.pipelines.poses.pipeline import SolveOptions, solve
from backend.pipelines.poses.points_ply import read_points
from backend.progress import JobError, Progress
from shared_protocol import camera_file
from shared_protocol import scale as sp

W, H, F = 320, 180, 280.0
HEIGHT = 0.9                                   # true camera height (m)
BOX = raycast_scene.Scene().boxes[2]           # (-0.2, 1.0, 0) - (0.25, 1.4, 0.35)
FOOT = np.array([BOX.lo[0], BOX.lo[1], 0.0])   # front-left bottom corner
TOP = np.array([BOX.lo[0], BOX.lo[1], BOX.hi[2]])
G0, G1 = np.array([-0.6, 0.9, 0.0]), np.array([0.6, 1.0, 0.0])   # two floor points seen in frame 5


def _truth_doc(k1=0.0, k2=0.0):
    mats = raycast_scene.handheld_path(24, seed=2, height=HEIGHT)
    return camera_file.make_document(W, H, 24.0, mats, F, (W / 2, H / 2), k1=k1, k2=k2,
                                     ground_plane={"point": [0, 0, 0], "normal": [0, 0, 1]})


def _pixels(doc, frame, *points):
    cam = PinholeCamera.from_frame(doc["frames"][frame], doc.get("distortion"))
    px, depth = cam.project(np.array(points))
    assert (depth > 0).all() and (px >= 0).all() and (px[:, 0] <= W).all() and (px[:, 1] <= H).all()
    return px.ravel().tolist()


@pytest.mark.parametrize("k1", [0.0, -0.08])
def test_each_method_undoes_a_pure_scale_error(k1):
    truth = _truth_doc(k1=k1, k2=0.01 if k1 else 0.0)
    wrong = 0.37  # the solve's world = truth scaled by this about the ground origin
    doc = sp.rescale_document(truth, wrong, sp.default_info())
    frame = 5
    cases = {
        "camera_height": (float(camera_file.matrices(truth)[0, 2, 3]), {}),  # 0.9 m plus hand jitter
        "ground_pixels": (float(np.linalg.norm(G1 - G0)), {"frame": frame, "pixels": _pixels(truth, frame, G0, G1)}),
        "points": (float(np.linalg.norm(G1 - G0)), {"points": (wrong * G0, wrong * G1)}),
        "foot_top": (float(BOX.hi[2]), {"frame": frame, "pixels": _pixels(truth, frame, FOOT, TOP)}),
    }
    for method, (metres, kw) in cases.items():
        factor, info = sp.measure(doc, method, metres, **kw)
        assert factor == pytest.approx(1.0 / wrong, rel=1e-9), method
        fixed = sp.rescale_document(doc, factor, info)
        assert np.allclose(camera_file.matrices(fixed), camera_file.matrices(truth), atol=1e-9), method
        assert not sp.is_guess(sp.info_of(fixed)) and sp.info_of(fixed)["value"] == metres
    # picking uncertainty: 1 px at these distances is a fraction of a percent, not zero
    _, info = sp.measure(doc, "ground_pixels", 1.0, frame=frame, pixels=_pixels(truth, frame, G0, G1))
    assert 1e-4 < info["uncertainty_rel"] < 0.05


def test_rescaling_keeps_rotations_ground_and_pixels():
    truth = _truth_doc()
    doc = sp.rescale_document(truth, 2.5, sp.make_info("camera_height", 2.25, None, "camera", "x"))
    a, b = camera_file.matrices(truth), camera_file.matrices(doc)
    assert np.allclose(a[:, :3, :3], b[:, :3, :3]) and np.allclose(b[:, :3, 3], 2.5 * a[:, :3, 3])
    assert doc["ground_plane"] == truth["ground_plane"]
    # a ground point scales with the world, so it stays under the same pixel
    px = _pixels(truth, 3, G0)
    assert np.allclose(sp.ground_point(doc, 3, *px), 2.5 * G0, atol=1e-9)


def test_old_files_read_as_the_default_guess():
    doc = _truth_doc()
    assert sp.is_guess(sp.info_of(doc))
    assert "guess" in sp.describe(sp.info_of(doc)) and "--camera-height" in sp.describe(sp.info_of(doc))
    doc["stats"] = {"scale_source": "known_distance_points"}
    assert sp.info_of(doc)["source"] == "known_distance"


def test_bad_references_fail_with_one_line():
    doc = _truth_doc()
    with pytest.raises(sp.ScaleError, match="no solved camera"):
        sp.measure(doc, "ground_pixels", 1.0, frame=99, pixels=[1, 2, 3, 4])
    with pytest.raises(sp.ScaleError, match="does not see the ground"):
        sp.measure(doc, "ground_pixels", 1.0, frame=0, pixels=[160, 2, 160, 170])  # above the horizon
    with pytest.raises(sp.ScaleError, match="outside"):
        sp.measure(doc, "foot_top", 0.3, frame=0, pixels=[160, 170, 500, 10])
    for bad in ({"scale_distance": 1.0}, {"scale_pixels": "0,1,2,3,4"}, {"camera_height": -1},
                {"camera_height": 1.0, "scale_height": 0.3, "scale_foot_top": "0,1,2,3,4"},
                {"scale_height": 0.3}, {"scale_distance": 1.0, "scale_pixels": "0,1,2"},
                {"scale_distance": 1.0, "scale_pixels": "1.5,1,2,3,4"},
                {"scale_distance": 1.0, "scale_xyz": "a,b"}):
        with pytest.raises(JobError) as err:
            bscale.request_from_params(bad, "poses")
        assert err.value.code == "bad_params" and "\n" not in err.value.message


def _args(module, *argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.params_from_args(parser.parse_args(list(argv)))


def test_cli_options_reach_the_request(tmp_path):
    p = _args(poses_job, str(tmp_path), "--scale-distance", "0.5", "--scale-pixels", "3,10,20,30,40")
    assert bscale.request_from_params(p) == bscale.ScaleRequest("ground_pixels", 0.5, 3, (10.0, 20.0, 30.0, 40.0))
    p = _args(poses_job, str(tmp_path), "--scale-height", "0.35", "--scale-foot-top", "2,1,2,3,4")
    assert bscale.request_from_params(p).method == "foot_top"
    p = _args(scale_job, str(tmp_path), "--scale-distance", "1", "--scale-xyz", "0,0,0,1,2,3")
    assert bscale.request_from_params(p).xyz == (0, 0, 0, 1, 2, 3)
    p = _args(composite_job, str(tmp_path / "v.mp4"), str(tmp_path / "p.glb"), "--camera-height", "0.3")
    assert p["camera_height"] == 0.3 and composite_job._scale(p) == bscale.ScaleRequest("camera_height", 0.3)
    assert "camera_height" not in _args(poses_job, str(tmp_path))  # no option: the guess


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """A real solve of the rendered clip (default scale: a guess) and the truth."""
    out = tmp_path_factory.mktemp("scaleclip")
    truth = raycast_scene.write_clip(out, raycast_scene.handheld_path(24, seed=2, height=HEIGHT), F, W, H,
                                     video=False)
    sol = solve(out / "frames", SolveOptions(threads=2), Progress())
    return out, truth, sol


def _true_scale_error(doc, truth) -> float:
    """Relative error of the world's scale against the truth (Umeyama over camera centres)."""
    reg = [i for i, f in enumerate(doc["frames"]) if f["registered"]]
    s, _, _ = umeyama(camera_file.matrices(doc)[reg, :3, 3], camera_file.matrices(truth)[reg, :3, 3])
    return abs(s - 1.0)


def _stands_for(sol, doc, truth, k):
    """Where each sparse point really is: the true camera k's ray through the pixel the point
    projects to in the solved camera k meets the true scene (NaN where it is not in view)."""
    px, depth = PinholeCamera.from_frame(doc["frames"][k]).project(sol.points_xyz)
    out = np.full((len(px), 3), np.nan)
    idx = np.flatnonzero((depth > 0) & (px[:, 0] > 0) & (px[:, 0] < W) & (px[:, 1] > 0) & (px[:, 1] < H))
    cam = PinholeCamera.from_frame(truth["frames"][k])
    rays = np.array([cam.ray(*px[i])[1] for i in idx]).reshape(-1, 3)
    eye = camera_file.matrices(truth)[k, :3, 3]
    _, hit = raycast_scene.Scene()._trace(np.repeat(eye[None], len(idx), 0), rays)
    out[idx] = eye + hit[:, None] * rays
    return out


def test_real_solve_each_method_within_one_percent(solved, tmp_path):
    out, truth, sol = solved
    doc = sol.to_document()
    assert sp.is_guess(sp.info_of(doc)) and bscale.summary_lines(doc["stats"])["scale_is_guess"]
    assert _true_scale_error(doc, truth) > 0.4  # the guess: 1.6 m against 0.9 m, 1 - 0.9 / 1.6 = 0.44
    frame = 5
    requests = {
        "camera_height": bscale.ScaleRequest("camera_height", float(camera_file.matrices(truth)[0, 2, 3])),
        "ground_pixels": bscale.ScaleRequest("ground_pixels", float(np.linalg.norm(G1 - G0)), frame,
                                             tuple(_pixels(truth, frame, G0, G1))),
        "foot_top": bscale.ScaleRequest("foot_top", float(BOX.hi[2]), frame, tuple(_pixels(truth, frame, FOOT, TOP))),
    }
    # two 3D points as an artist snaps them in Blender: sparse points of the floor, with the true
    # distance between what they stand for (the true camera's ray through the point's pixel
    # meets the true scene): independent of any alignment of the solve to the truth
    stands_for = np.stack([_stands_for(sol, doc, truth, k) for k in (frame, 18)])
    consistent = np.linalg.norm(stands_for[0] - stands_for[1], axis=1) < 0.005  # one surface point in both views
    stands_for = stands_for[0]
    on_floor = np.flatnonzero(consistent & (np.abs(stands_for[:, 2]) < 1e-6))
    a = on_floor[np.argmin(np.linalg.norm(stands_for[on_floor] - G0, axis=1))]
    b = on_floor[np.argmin(np.linalg.norm(stands_for[on_floor] - G1, axis=1))]
    assert np.linalg.norm(stands_for[a] - stands_for[b]) > 0.8
    requests["xyz"] = bscale.ScaleRequest("xyz", float(np.linalg.norm(stands_for[a] - stands_for[b])),
                                          xyz=tuple(np.concatenate([sol.points_xyz[a], sol.points_xyz[b]])))
    for name, req in requests.items():
        factor, info = bscale.measure(doc, sol.points_xyz, req)
        fixed = sp.rescale_document(doc, factor, info)
        assert _true_scale_error(fixed, truth) < 0.01, name
        assert sp.info_of(fixed)["source"] != "camera_height_default"
    # what `poses` does with a pixel reference after solving: the solution itself, points too
    import copy

    fixed = bscale.apply_to_solution(copy.deepcopy(sol), requests["foot_top"])
    assert _true_scale_error(fixed.to_document(), truth) < 0.01
    k = fixed.matrix_world[0, 2, 3] / sol.matrix_world[0, 2, 3]
    assert np.allclose(fixed.points_xyz, k * sol.points_xyz) and fixed.stats["scale"]["source"] == "known_height"
    # the folder form: rescale in place, points and exports follow
    src = tmp_path / "solve"
    from backend.pipelines.poses.outputs import write_outputs

    write_outputs(sol, src)
    h0 = float(camera_file.matrices(truth)[0, 2, 3])
    res = scale_job.run({"solve": str(src), "camera_height": h0}, src, Progress())
    fixed = camera_file.read(src / "cameras.json")
    assert _true_scale_error(fixed, truth) < 0.01 and res.summary["scale_source"] == "camera_height"
    assert res.summary["scale_is_guess"] is False
    xyz, _, _ = read_points(src / "points.ply")
    assert np.allclose(xyz, sol.points_xyz * res.summary["factor"], atol=1e-4 * np.abs(xyz).max())
    assert camera_file.matrices(fixed)[0, 2, 3] == pytest.approx(h0)


def test_composite_rescales_the_solve_and_its_splats(tmp_path):
    """The composite's scaled solve and splats: the same pictures from the scaled cameras (the
    splats scale with the world), planar depth multiplied by the factor; cached by reference."""
    from backend.pipelines.composite import pipeline as comp
    from backend.pipelines.poses.outputs import write_outputs
    from backend.pipelines.poses.solution import PoseSolution
    from backend.pipelines.render import cameras_from_json, render_views
    from backend.pipelines.splats_io import Splats, load_splats, write_ply

    truth = _truth_doc()
    sol = PoseSolution.from_document(sp.rescale_document(truth, 0.5, sp.default_info()))
    rng = np.random.default_rng(1)
    sol.points_xyz = 0.5 * np.c_[rng.uniform(-1, 1, (50, 2)) + [0, 1.5], np.zeros(50)]
    sol.points_rgb, sol.track_length = np.full((50, 3), 100, np.uint8), np.full(50, 2, np.int32)
    write_outputs(sol, tmp_path / "solve")
    n = 400
    splats = Splats(means=0.5 * np.c_[rng.uniform(-1.5, 1.5, (n, 2)) + [0, 1.5], rng.uniform(0, 0.5, n)],
                    scales=np.log(np.full((n, 3), 0.5 * 0.06)), quats=np.tile([1.0, 0, 0, 0], (n, 1)),
                    opacities=np.full(n, 2.0), sh0=rng.normal(0, 1, (n, 3)))
    write_ply(splats, tmp_path / "splats.ply")
    req = bscale.ScaleRequest("camera_height", float(camera_file.matrices(truth)[0, 2, 3]))
    work = tmp_path / "work"
    work.mkdir()
    scaled_dir, factor = comp._scaled_solve(tmp_path / "solve", req, work)
    assert factor == pytest.approx(2.0, rel=1e-9) and comp._scaled_solve(tmp_path / "solve", None, work)[1] == 1.0
    assert comp._scaled_solve(tmp_path / "solve", req, work) == (scaled_dir, factor)  # cached
    doc = camera_file.read(scaled_dir / "cameras.json")
    assert np.allclose(camera_file.matrices(doc), camera_file.matrices(truth), atol=1e-9)
    scaled_splats = comp._scaled_splats(tmp_path / "splats.ply", factor, doc, work)
    assert np.allclose(load_splats(scaled_splats).means, 2 * splats.means, atol=1e-6)
    def cams(folder):  # three of the cameras at 80 px
        c = cameras_from_json(folder / "cameras.json", 80)
        return dataclasses.replace(c, viewmats=c.viewmats[::10], Ks=c.Ks[::10], names=c.names[::10])

    before = render_views(splats, cams(tmp_path / "solve"))
    after = render_views(load_splats(scaled_splats), cams(scaled_dir))
    assert np.abs(before["rgb"] - after["rgb"]).max() < 1e-3   # float32 rasterisation
    seen = before["alpha"] > 0.5
    assert seen.mean() > 0.05
    assert np.allclose(after["depth"][seen], 2 * before["depth"][seen], rtol=1e-4)
    line = bscale.summary_lines(doc["stats"])
    assert not line["scale_is_guess"] and "first camera" in line["scale"]


class _OracleDepth:
    """Stand-in metric depth model: the scene's true z-depth of the frame it is given, times 5 %
    log-normal noise per pixel (which frame: the truth frame whose image is identical)."""

    metric, output = True, "depth"

    def __init__(self, frames_dir, truth, seed=0):
        import cv2

        self.images = [cv2.imread(str(p))[:, :, ::-1] for p in sorted((frames_dir / "frames").glob("*.png"))]
        self.c2w = camera_file.matrices(truth)
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def __call__(self, rgb, focal_px=None):
        i = int(np.argmin([np.abs(im.astype(int) - rgb).mean() for im in self.images]))
        self.calls += 1
        depth = raycast_scene.Scene().depth(self.c2w[i], F, W, H)
        return depth * np.exp(self.rng.normal(0, 0.05, depth.shape))


def test_metric_depth_sets_the_scale_automatically(solved, tmp_path):
    """With a metric depth model the solve's scale is metric within 2 % and says so; without
    one it stays the flagged guess."""
    import copy

    out, truth, sol = solved
    sol = copy.deepcopy(sol)
    assert not bscale.automatic_metric(sol, out / "frames", weights_dir=tmp_path)  # no model: the guess
    assert sp.is_guess(sp.info_of(sol.stats))
    oracle = _OracleDepth(out, truth)
    assert bscale.automatic_metric(sol, out / "frames", model=oracle)
    assert oracle.calls >= 4
    info = sp.info_of(sol.stats)
    assert info["source"] == "metric_depth" and 0 < info["uncertainty_rel"] < 0.02
    assert _true_scale_error(sol.to_document(), truth) < 0.02
    assert not bscale.summary_lines(sol.stats)["scale_is_guess"]
