"""A scene from one photo with oracle models: the ray-cast room's true depth and true renders
stand in for the depth model and the diffusion model, so what is checked is the pipeline's own
part (outpainting canvas, lifting, warping, masks, depth alignment, fusion, training, ground
plane, outputs) against the room's truth."""
from __future__ import annotations

import json

import numpy as np
import pytest

W, H, F = 320, 180, 250.0
VIEWS = 3


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory):
    import cv2

    from backend.models.scene_oracles import OracleSceneModels, oracle_photo
    from backend.pipelines.scene import SceneOptions, make_scene
    from backend.pipelines.scene.refine import RefineOptions

    tmp = tmp_path_factory.mktemp("scene")
    scene, c2w, rgb = oracle_photo(W, H, F)
    photo = tmp / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    models = OracleSceneModels(scene, c2w)
    opts = SceneOptions(max_size=None, fov_deg=float(np.degrees(2 * np.arctan(W / 2 / F))), views=VIEWS,
                        refine=RefineOptions(steps=1, rounds=1, resolution_start=0.5),
                        preview_frames=2)
    summary = make_scene([photo], tmp / "out", models, opts)
    return summary, tmp / "out", scene, c2w, models


def test_held_out_trajectory_views_match_the_truth(oracle_run):
    """Views halfway between the generated ones (never inpainted nor trained on), rendered from
    the splats, against the room's true render through the same camera: >= 25 dB each."""
    from backend.evaluation.scene_metrics import held_out_psnr

    summary, out, scene, c2w, _ = oracle_run
    scores = held_out_psnr(out, scene, c2w, F, W, H, which=[0, VIEWS // 2, VIEWS - 1])
    assert min(scores) >= 25.0, scores


def test_ground_plane_and_scale_match_the_truth(oracle_run):
    """The ground fitted to the lifted points is the room's floor and the depth's metres are
    kept: the world's +Z is the floor's normal (within 0.02 rad), the photo's camera is 1.6 m
    above it and the world's origin (where the photo's optical axis meets the ground) is at the
    true distance from it, both within 2 %, and that origin lies on the true floor."""
    from backend.evaluation.scene_metrics import ground_errors

    summary, out, _, c2w, _ = oracle_run
    e = ground_errors(out, c2w)
    assert e["normal_rad"] < 0.02, e
    assert abs(e["height_rel"]) < 0.02 and abs(e["distance_rel"]) < 0.02, e
    assert abs(e["origin_height_m"]) < 0.02 * c2w[2, 3], e
    assert summary["ground_plane_found"] and summary["metric"]


def test_outputs_read_as_a_solve_and_a_reconstruction(oracle_run):
    from backend.media.video import probe
    from backend.pipelines.reconstruct.scene import load_solve
    from backend.pipelines.splats_io import read_ply

    summary, out, _, _, models = oracle_run
    solve = load_solve(out)
    assert len(solve.sources) == VIEWS + 1 and solve.input_path() == out / "frames"
    assert sorted(p.name for p in (out / "frames").iterdir()) == solve.sources
    assert len(read_ply(out / "splats.ply")) == summary["gaussians"] > summary["gaussians_coarse"] * 0 + 1000
    assert probe(out / "preview.mp4").frame_count == 2
    for strip in ("coarse_strip.png", "refine_strip.png"):
        assert (out / strip).stat().st_size > 1000
    assert json.loads((out / "scene.json").read_text())["views"] == VIEWS + 1
    # one depth and one inpaint call for the outpainted photo and each generated view; one
    # denoise per generated view and refine round
    assert models.calls == {"depth": VIEWS + 1, "inpaint": VIEWS + 1, "denoise": VIEWS}
    # the warp found something to generate at every view, and the depth fits are near identity
    assert all(0.001 < f < 0.5 for f in summary["generated_fraction"])
    assert all(abs(a - 1) < 0.05 and abs(b) < 0.02 for a, b in summary["depth_alignment"])
