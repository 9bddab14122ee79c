"""A scene from two photos of one place (their relative pose from the essential matrix, scaled
to the depth model's metres), and photos of different places failing with one line."""
from __future__ import annotations

import numpy as np
import pytest

from backend.progress import JobError

W, H, F = 320, 180, 250.0


def _write(path, rgb):
    import cv2

    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _opts(views=1):
    from backend.pipelines.scene import SceneOptions
    from backend.pipelines.scene.refine import RefineOptions

    return SceneOptions(max_size=None, fov_deg=float(np.degrees(2 * np.arctan(W / 2 / F))), views=views,
                        refine=RefineOptions(steps=0, rounds=0), preview_frames=2)


def test_two_photos_of_one_place_are_placed_together(tmp_path):
    """The second photo's camera, 0.32 m from the first, lands within 15 % of that baseline of
    its true place (the direction from the essential matrix, the length from the median ratio
    of metric depth to triangulated depth), and the ground is the floor."""
    from backend.evaluation.raycast_scene import look_at
    from backend.evaluation.scene_metrics import ground_errors, scene_to_truth
    from backend.models.scene_oracles import PHOTO_TARGET, OracleSceneModels, oracle_photo
    from backend.pipelines.scene import make_scene

    room, c0, rgb0 = oracle_photo(W, H, F, texels_per_metre=160.0)
    c1 = look_at((0.3, -1.4, 1.55), PHOTO_TARGET)
    a = _write(tmp_path / "a.png", rgb0)
    b = _write(tmp_path / "b.png", room.render(c1, F, W, H, 2))
    summary = make_scene([a, b], tmp_path / "out", OracleSceneModels(room, c0), _opts())
    assert summary["photo_views"] == 2 and summary["views"] == 3
    mats, to_truth = scene_to_truth(tmp_path / "out", c0)
    baseline = np.linalg.norm(c1[:3, 3] - c0[:3, 3])
    assert np.linalg.norm((to_truth @ mats[1])[:3, 3] - c1[:3, 3]) < 0.15 * baseline
    e = ground_errors(tmp_path / "out", c0)
    assert e["normal_rad"] < 0.02 and abs(e["height_rel"]) < 0.02, e


def test_photos_of_different_places_fail_with_one_line(tmp_path):
    from backend.models.scene_oracles import OracleSceneModels, oracle_photo
    from backend.pipelines.scene import make_scene

    room, c0, rgb0 = oracle_photo(W, H, F)
    other = np.random.default_rng(5).integers(0, 256, (H, W, 3), dtype=np.uint8)
    with pytest.raises(JobError, match="are they of one place") as e:
        make_scene([_write(tmp_path / "a.png", rgb0), _write(tmp_path / "b.png", other)], tmp_path / "out",
                   OracleSceneModels(room, c0), _opts())
    assert e.value.code == "solve_failed" and "\n" not in e.value.message


def test_three_photos_are_placed_by_the_camera_solve(tmp_path):
    """Three photos go through the project's camera solve on an image set; its scale is set from
    the first photo's metric depth. Each further camera lands within 5 % of its distance to the
    first of its true place."""
    from backend.evaluation.raycast_scene import look_at
    from backend.evaluation.scene_metrics import scene_to_truth
    from backend.models.scene_oracles import PHOTO_TARGET, OracleSceneModels, oracle_photo
    from backend.pipelines.scene import make_scene

    room, c0, rgb0 = oracle_photo(W, H, F, texels_per_metre=160.0)
    cams = [c0, look_at((0.3, -1.4, 1.55), PHOTO_TARGET), look_at((0.6, -1.3, 1.5), PHOTO_TARGET)]
    paths = [_write(tmp_path / f"{i}.png", room.render(c, F, W, H, 2)) for i, c in enumerate(cams)]
    summary = make_scene(paths, tmp_path / "out", OracleSceneModels(room, c0), _opts())
    assert summary["photo_views"] == 3 and "3 photos solved together" in summary["notes"][-1]
    mats, to_truth = scene_to_truth(tmp_path / "out", c0)
    for i in (1, 2):
        baseline = np.linalg.norm(cams[i][:3, 3] - c0[:3, 3])
        assert np.linalg.norm((to_truth @ mats[i])[:3, 3] - cams[i][:3, 3]) < 0.05 * baseline
