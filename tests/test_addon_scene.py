"""The add-on's Scene from Image panel: its job parameters (bpy-free) and, in Blender, its
operators on a scene folder made by the pipeline with oracle models (bpy in a subprocess)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from blender_addon.core.job_params import ParamError
from blender_addon.core.scene_job import scene_params

sys.path.insert(0, str(Path(__file__).resolve().parent / "blender_scripts"))
from bpy_subprocess import run_script  # noqa: E402


def test_scene_params_take_a_photo_or_a_folder_of_photos(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    p = scene_params(str(tmp_path / "a.jpg"), "a garden", views=4, fov=50.0)
    assert p == {"images": [str(tmp_path / "a.jpg")], "prompt": "a garden", "views": 4, "steps": 300,
                 "rounds": 1, "fov": 50.0, "max_size": 1024}
    assert scene_params(str(tmp_path))["images"] == [str(tmp_path / "a.jpg"), str(tmp_path / "b.png")]
    with pytest.raises(ParamError, match="not found"):
        scene_params(str(tmp_path / "none.jpg"))
    with pytest.raises(ParamError, match="choose a photo"):
        scene_params("")
    with pytest.raises(ParamError, match="field of view"):
        scene_params(str(tmp_path / "a.jpg"), fov=200.0)


def test_import_scene_brings_in_the_camera_path_and_splats(tmp_path):
    import cv2

    from backend.models.scene_oracles import OracleSceneModels, oracle_photo
    from backend.pipelines.scene import SceneOptions, make_scene
    from backend.pipelines.scene.refine import RefineOptions
    from backend.pipelines.splats_io import read_ply
    from shared_protocol import camera_file

    w, h, f = 96, 54, 75.0
    scene, c2w, rgb = oracle_photo(w, h, f)
    cv2.imwrite(str(tmp_path / "photo.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = tmp_path / "scene"
    make_scene([tmp_path / "photo.png"], out, OracleSceneModels(scene, c2w),
               SceneOptions(max_size=None, fov_deg=float(np.degrees(2 * np.arctan(w / 2 / f))), views=2,
                            refine=RefineOptions(steps=0, rounds=0), preview_frames=2))
    run_script("scene_from_image.py", tmp_path / "r.json", out, user_dir=tmp_path / "user")
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["panel"] and r["bad_path"] == ["CANCELLED"]
    assert r["import"] == ["FINISHED"] and r["size"] == [w, h]
    truth = camera_file.matrices(camera_file.read(out / "cameras.json"))
    assert r["frames"][1] - r["frames"][0] + 1 == len(truth) == 3
    np.testing.assert_allclose(np.array(r["matrices"]), truth, atol=1e-4)
    assert r["splats"] == len(read_ply(out / "splats.ply"))
    assert "3 views" in r["result"]
