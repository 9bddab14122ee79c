"""A product composited into a scene made from one photo, along the scene's camera path: the
scene folder is the footage, the solve and the reconstruction of the main job."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "backend" / "samples"
TALL = 0.6  # m: the sample bottle scaled to stand out in a small frame


W, H, F = 160, 90, 125.0


@pytest.fixture(scope="module")
def scene_folder(tmp_path_factory):
    import cv2

    from backend.models.scene_oracles import OracleSceneModels, oracle_photo
    from backend.pipelines.scene import SceneOptions, make_scene
    from backend.pipelines.scene.refine import RefineOptions

    tmp = tmp_path_factory.mktemp("scene")
    scene, c2w, rgb = oracle_photo(W, H, F)
    cv2.imwrite(str(tmp / "photo.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    make_scene([tmp / "photo.png"], tmp / "scene", OracleSceneModels(scene, c2w),
               SceneOptions(max_size=None, fov_deg=float(np.degrees(2 * np.arctan(W / 2 / F))), views=2,
                            refine=RefineOptions(steps=0, rounds=0), preview_frames=2))
    return tmp / "scene"


def test_product_composited_along_the_scene_camera_path(scene_folder, tmp_path):
    import cv2

    from backend.media.video import iter_frames, probe
    from backend.pipelines.composite.placement import PinholeCamera
    from backend.runner import run_job
    from shared_protocol import camera_file
    from tests.test_composite_job import bottle_points, check_product_at

    w, folder = W, scene_folder
    out = tmp_path / "out"
    res = run_job("composite", {"video": str(folder), "product": str(SAMPLES / "product.glb"), "preview": True,
                                "work_dir": str(tmp_path / "work"), "key_light": False,
                                "product_height": TALL, "at_pixel": [40, 75]}, out)  # clear floor, lower left
    doc = camera_file.read(folder / "cameras.json")
    frames = list(iter_frames(out / "composite.mp4"))
    assert probe(out / "composite.mp4").frame_count == len(doc["frames"]) == 3
    anchor = np.array(res.summary["anchor_world"])
    assert abs(anchor[2]) < 1e-6  # on the scene's ground
    backgrounds = sorted((tmp_path / "work").glob("shot-*/background"))[0]
    for i, (_, _, got) in enumerate(frames):
        bg = cv2.cvtColor(cv2.imread(str(backgrounds / f"{i:06d}.png")), cv2.COLOR_BGR2RGB)
        got = got[:bg.shape[0], :bg.shape[1]].astype(int)
        s = bg.shape[1] / w
        cam = PinholeCamera.from_frame(doc["frames"][i])
        # the bottle TALL metres high (the scene is in metres) standing on the ground at the anchor
        sil = cam.project(bottle_points(anchor, [0, 0, 1.0], TALL))[0] * s
        mid = cam.project(anchor + [0, 0, TALL / 2])[0][0] * s
        check_product_at(got, bg, sil, mid)


def test_stereo_renders_both_eyes_along_the_scene_path(scene_folder, tmp_path):
    """``stereo PATH.json --reconstruction SCENE``: the scene's preview path in side-by-side stereo."""
    from backend.media.video import probe
    from backend.runner import run_job

    run_job("stereo", {"input": str(scene_folder / "preview_path.json"), "reconstruction": str(scene_folder),
                       "layout": "sbs", "device": "cpu"}, tmp_path / "out")
    got = probe(tmp_path / "out" / "stereo.mp4")
    assert got.frame_count == 2 and (got.width, got.height) == (2 * W, H)
