"""Job adapter ``poses``: arguments, parameter validation, outputs, arrays, failures leave nothing."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from backend.evaluation import raycast_scene
from backend.jobs import poses as job
from backend.pipelines.poses.points_ply import read_points
from backend.progress import JobError, Progress
from shared_protocol import camera_file

W, H, F = 320, 180, 280.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("jobclip")
    truth = raycast_scene.write_clip(out, raycast_scene.handheld_path(24, seed=5), F, W, H)
    return out, truth


def _args(*argv):
    parser = argparse.ArgumentParser()
    job.add_arguments(parser)
    return job.params_from_args(parser.parse_args(list(argv)))


def test_arguments_to_params(tmp_path):
    p = _args(str(tmp_path), "--stride", "2", "--max-frames", "50", "--focal-mm", "35",
              "--sensor-width-mm", "36", "--scale-distance", "2.5", "--scale-cameras", "0", "10")
    assert p["input"] == str(tmp_path.resolve()) and p["stride"] == 2 and p["max_frames"] == 50
    assert p["focal_mm"] == 35 and p["sensor_width_mm"] == 36
    assert p["scale_cameras"] == [0, 10] and p["scale_distance"] == 2.5
    json.dumps(p)
    opts = job.options_from_params(p)
    assert opts.scale_ids == ("camera", 0, 10) and opts.ba_observations is None
    assert job.options_from_params(_args(str(tmp_path), "--ba-observations", "40")).ba_observations == 40
    assert job.options_from_params(_args(str(tmp_path), "--ba-observations", "100")).ba_observations == 100


@pytest.mark.parametrize("bad", [
    {"input": 3}, {"stride": 0}, {"start": 5, "stop": 5}, {"max_size": 10}, {"focal_px": -1},
    {"focal_px": 100, "focal_mm": 35, "sensor_width_mm": 36}, {"focal_mm": 35},
    {"scale_distance": 1.0}, {"scale_points": [1, 2]}, {"scale_cameras": [1, 1], "scale_distance": 1},
    {"matcher": "orb"}, {"threads": 0}, {"ba_observations": -1}, {"ba_observations": 2.5},
])
def test_bad_params(bad, tmp_path):
    params = {"input": str(tmp_path)}
    params.update(bad)
    with pytest.raises(JobError) as err:
        job.options_from_params(params)
    assert err.value.code == "bad_params"


def test_run_writes_outputs_and_arrays(clip, tmp_path):
    src, truth = clip
    out = tmp_path / "out"
    out.mkdir()
    params = {"input": str(src / "clip.mp4"), "threads": 2, "scale_distance": 0.5,
              "scale_cameras": [0, 23]}
    result = job.run(params, out, Progress())
    assert set(result.files) == {"cameras.json", "points.ply", "colmap/cameras.txt",
                                 "colmap/images.txt", "colmap/points3D.txt", "transforms.json"}
    for name in result.files:
        assert (out / name).is_file()
    doc = camera_file.read(out / "cameras.json")
    a = result.arrays
    n = len(doc["frames"])
    assert n == 24 and a["matrix_world"].shape == (n, 4, 4) and a["matrix_world"].dtype == np.float64
    assert np.allclose(a["matrix_world"], camera_file.matrices(doc))
    assert a["focal_px"].shape == (n,) and a["principal_point_px"].shape == (n, 2)
    assert a["registered"].all()
    xyz, rgb, lengths = read_points(out / "points.ply")
    assert np.allclose(xyz, a["points_xyz"], atol=1e-4) and (rgb == a["points_rgb"]).all()
    assert (lengths == a["points_track_length"]).all() and (lengths >= 2).all()
    # The known distance between cameras 0 and 23 sets the scale.
    c = a["matrix_world"][:, :3, 3]
    assert np.linalg.norm(c[0] - c[23]) == pytest.approx(0.5, rel=1e-9)
    assert result.summary["scale_source"] == "known_distance_cameras"
    assert result.summary["n_registered"] == 24
    # ... and that scale agrees with the true one (truth in metres): ratio of trajectory sizes.
    tc = camera_file.matrices(truth)[:, :3, 3]
    k = np.linalg.norm(tc[0] - tc[23]) / 0.5
    assert np.linalg.norm(c[5] - c[17]) * k == pytest.approx(np.linalg.norm(tc[5] - tc[17]), rel=0.01)


def test_focal_mm_is_converted(clip, tmp_path):
    """Known focal in mm: 280 px over a 320 px wide image = 31.5 mm on a 36 mm sensor."""
    src, _ = clip
    out = tmp_path / "o"
    out.mkdir()
    result = job.run({"input": str(src / "clip.mp4"), "threads": 2, "focal_mm": 31.5,
                      "sensor_width_mm": 36.0, "max_frames": 12}, out, Progress())
    assert result.arrays["focal_px"][0] == pytest.approx(280.0)


def test_known_distance_between_points(clip, tmp_path):
    src, _ = clip
    out = tmp_path / "o"
    out.mkdir()
    result = job.run({"input": str(src / "clip.mp4"), "threads": 2, "max_frames": 12,
                      "scale_points": [3, 40], "scale_distance": 1.25}, out, Progress())
    xyz, _, _ = read_points(out / "points.ply")
    assert np.linalg.norm(xyz[3] - xyz[40]) == pytest.approx(1.25, rel=1e-5)
    assert result.summary["scale_source"] == "known_distance_points"
    with pytest.raises(JobError, match="not two of the"):
        job.run({"input": str(src / "clip.mp4"), "threads": 2, "max_frames": 12,
                 "scale_points": [3, 10 ** 6], "scale_distance": 1.0}, tmp_path / "x", Progress())


def test_failure_leaves_out_dir_empty(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(JobError) as err:
        job.run({"input": str(bad)}, out, Progress())
    assert str(bad) in err.value.message
    assert list(out.iterdir()) == []
