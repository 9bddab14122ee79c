"""The add-on's Set Scale tool against a solve whose only error is scale (bpy in a subprocess).

Truth: the hand-held path of the ray-cast scene 0.9 m above its floor and a few true floor
points, imported at half their size with the scale recorded as the default guess. Set Scale
from two empties snapped to two points must bring every camera and point back to the truth,
leave the ground where it was, scale imported splats with the world, move a product with its
ground point at its own size, and say the scale is no longer a guess; the camera-height and
cursor references must give the factor they ask for. The reference the add-on hands to jobs
that reuse the solve folder must make the backend apply the same factor to the files. Values
pass through Blender's float32 keys and vertices: 1e-5 m on positions of a few metres.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.evaluation import raycast_scene
from backend.pipelines.poses import scale as bscale
from backend.pipelines.poses.points_ply import write_points
from shared_protocol import camera_file
from shared_protocol import scale as sp

sys.path.insert(0, str(Path(__file__).resolve().parent / "blender_scripts"))
from bpy_subprocess import run_script  # noqa: E402

TOL = 1e-5
WRONG = 0.5
SAMPLES = Path(__file__).resolve().parents[1] / "backend" / "samples"


def test_set_scale_three_ways(tmp_path):
    true_c2w = raycast_scene.handheld_path(12, seed=2, height=0.9)
    truth = camera_file.make_document(320, 180, 24.0, true_c2w, 280.0, (160, 90),
                                      ground_plane={"point": [0, 0, 0], "normal": [0, 0, 1]})
    doc = sp.rescale_document(truth, WRONG, sp.default_info())
    camera_file.write(tmp_path / "cameras.json", doc)
    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(-1, 1, (40, 2)) + [0, 1.0], np.zeros(40)]
    pts[20:, 2] = rng.uniform(0.1, 0.5, 20)
    write_points(tmp_path / "points.ply", WRONG * pts, np.full((40, 3), 128), np.full(40, 3))
    g0, g1 = pts[3], pts[7]
    frame = 6  # scene frame 6 = video frame 5
    spec = {"g0": g0.tolist(), "g1": g1.tolist(), "distance": float(np.linalg.norm(g1 - g0)), "wrong": WRONG,
            "frame": frame, "height": float(true_c2w[frame - 1, 2, 3]), "h0": float(2 * true_c2w[0, 2, 3]),
            "video": str(SAMPLES / "sample_clip.mp4"), "product": str(SAMPLES / "product.glb")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "out.json"
    run_script("set_scale.py", out, tmp_path / "cameras.json", tmp_path / "points.ply", tmp_path / "spec.json",
               user_dir=tmp_path / "user")
    r = json.loads(out.read_text())

    assert "no imported camera solve" in r["no_solve_error"]
    assert "select exactly two objects" in r["no_selection_error"]
    assert r["before"]["guess"] and any("guess" in line for line in r["before"]["panel"])
    assert "splatstage.set_scale" in r["before"]["panel"]

    sel = r["selected"]
    assert np.abs(np.array(sel["cameras"]) - true_c2w[:, :3, 3]).max() < TOL
    assert np.abs(np.array(sel["points"]) - pts).max() < TOL
    assert np.allclose(sel["ground"]["origin"], [0, 0, 0], atol=TOL)
    assert np.allclose(sel["ground"]["normal"], [0, 0, 1], atol=1e-6)
    assert sel["ground"]["size"] > r["before"]["ground"]["size"]
    assert np.abs(np.array(sel["empties"]) - [g0, g1]).max() < TOL
    assert not sel["guess"] and not any("guess" in line for line in sel["panel"])
    assert np.allclose(sel["splats_scale"], 1 / WRONG) and np.allclose(sel["product_scale"], 1.0)
    assert np.allclose(sel["product"], g1, atol=TOL)  # stays on its ground point, at its real size

    # the same reference, handed to the backend, scales the solve folder by the same factor
    for step, factor in (("selected", 1 / WRONG), ("camera", 2 / WRONG), ("cursor", 1 / WRONG)):
        req = bscale.request_from_params(r[step]["params"], "composite")
        got, _ = bscale.measure(doc, WRONG * pts, req)
        assert abs(got / factor - 1) < 1e-5, step

    cam = r["camera"]
    assert np.abs(np.array(cam["cameras"]) - 2 * true_c2w[:, :3, 3]).max() < 2 * TOL
    assert cam["record"]["source"] == "camera_height"
    assert np.abs(np.array(r["cursor"]["cameras"]) - true_c2w[:, :3, 3]).max() < TOL
    assert np.allclose(r["cursor"]["cursor"], g0, atol=TOL)
    ref = r["reference"]  # the first camera twice as high as the truth: the world doubles
    assert ref["factor"] == pytest.approx(2.0, rel=1e-6) and ref["params"] == {"camera_height": spec["h0"]}
    assert np.abs(np.array(ref["cameras"]) - 2 * true_c2w[:, :3, 3]).max() < 2 * TOL
    # ... and the Render panel's composite job takes it along when it reuses the solve folder
    from backend.jobs.composite import request_from_params

    params = r["composite_params"]
    assert params["solve"] == str(tmp_path) and params["camera_height"] == spec["h0"]
    assert request_from_params(params).scale == bscale.ScaleRequest("camera_height", spec["h0"])


def test_batch_scale_options():
    """The batch's scale options become the job reference; a half-given one fails in one line."""
    from blender_addon import batch

    def ref(*argv):
        return batch.scale_reference(batch.parse_args(["--video", "v.mp4", "--out", "o", *argv]))

    assert ref() == {}
    assert ref("--camera-height", "0.3") == {"camera_height": 0.3}
    assert ref("--scale-distance", "0.5", "--scale-pixels", "0,1,2,3,4") == {"scale_distance": 0.5,
                                                                           "scale_pixels": "0,1,2,3,4"}
    assert ref("--scale-height", "0.2", "--scale-foot-top", "3,1,2,3,4")["scale_height"] == 0.2
    for bad in (["--scale-distance", "0.5"], ["--camera-height", "-1"], ["--scale-foot-top", "0,1,2,3,4"],
                ["--camera-height", "1", "--scale-height", "0.2", "--scale-foot-top", "0,1,2,3,4"]):
        with pytest.raises(ValueError) as err:
            ref(*bad)
        assert "\n" not in str(err.value)
