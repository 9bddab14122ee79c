"""Interop: COLMAP text model and nerfstudio transforms.json, export -> import round trips,
and agreement of the exported conventions with pycolmap's own projection."""
from __future__ import annotations

import json

import numpy as np
import pytest

# a skip, not a collection error, without pycolmap (the GPU machine): `pytest -m gpu tests/` collects
pycolmap = pytest.importorskip("pycolmap")

from backend.evaluation.raycast_scene import look_at  # noqa: E402
from backend.pipelines.poses.colmap_text import export_colmap_text, import_colmap_text, read_colmap_points  # noqa: E402
from backend.pipelines.poses.nerfstudio import export_transforms, import_transforms  # noqa: E402
from backend.pipelines.poses.outputs import write_outputs  # noqa: E402
from backend.pipelines.poses.solution import PoseSolution  # noqa: E402
from shared_protocol import camera_file  # noqa: E402
from shared_protocol.camera_file import CameraFileError  # noqa: E402


def _solution(video=True, n=6):
    rng = np.random.default_rng(0)
    mats = np.array([look_at(rng.normal(0, 1, 3) + [0, -4, 1.6], rng.normal(0, 0.3, 3)) for _ in range(n)])
    reg = np.ones(n, bool)
    reg[2] = False
    sources = [str(10 + 3 * i) for i in range(n)] if video else [f"img_{i}.jpg" for i in range(n)]
    return PoseSolution(
        width=1920, height=1080, fps=25.0, sources=sources, matrix_world=mats, focal_px=1450.5,
        principal_point_px=(960.0, 540.0), k1=-0.031, k2=0.0042, registered=reg,
        reproj_error_px=np.where(reg, 0.3, np.nan), points_xyz=rng.normal(0, 1, (50, 3)),
        points_rgb=rng.integers(0, 255, (50, 3)).astype(np.uint8),
        track_length=rng.integers(2, 30, 50).astype(np.int32),
        ground_plane={"point": [0, 0, 0], "normal": [0, 0, 1]}, stats={"n_registered": n - 1})


def _registered(sol):
    return [i for i in range(len(sol.sources)) if sol.registered[i]]


@pytest.mark.parametrize("video", [True, False])
def test_colmap_text_round_trip(tmp_path, video):
    sol = _solution(video)
    export_colmap_text(sol, tmp_path / "colmap")
    doc = import_colmap_text(tmp_path / "colmap")
    keep = _registered(sol)
    assert [f["source"] for f in doc["frames"]] == [sol.sources[i] for i in keep]
    assert np.allclose(camera_file.matrices(doc), sol.matrix_world[keep], atol=1e-9)
    f0 = doc["frames"][0]
    assert f0["focal_px"] == pytest.approx(sol.focal_px)
    assert f0["principal_point_px"] == pytest.approx(list(sol.principal_point_px))
    assert doc["distortion"]["k1"] == pytest.approx(sol.k1) and doc["distortion"]["k2"] == pytest.approx(sol.k2)
    xyz, rgb = read_colmap_points(tmp_path / "colmap")
    assert np.allclose(xyz, sol.points_xyz) and (rgb == sol.points_rgb).all()


def test_colmap_export_projects_like_pycolmap(tmp_path):
    """A world point lands on the same pixel through pycolmap's reading of the export as through
    the Blender camera matrix (camera looks down -Z, +Y up) with the pinhole + radial2 model."""
    sol = _solution()
    export_colmap_text(sol, tmp_path / "colmap")
    rec = pycolmap.Reconstruction()
    rec.read_text(str(tmp_path / "colmap"))
    assert rec.num_images() == 5 and rec.num_points3D() == 50
    i = 3
    m = sol.matrix_world[i]
    x_world = m[:3, 3] - 5.0 * m[:3, 2] + 0.8 * m[:3, 0] - 0.4 * m[:3, 1]
    local = m[:3, :3].T @ (x_world - m[:3, 3])
    u, v = local[0] / -local[2], -local[1] / -local[2]
    r2 = u * u + v * v
    d = 1 + sol.k1 * r2 + sol.k2 * r2 * r2
    expect = [sol.focal_px * u * d + 960.0, sol.focal_px * v * d + 540.0]
    image = next(im for im in rec.images.values() if im.name == f"frame_{int(sol.sources[i]):06d}.png")
    got = image.project_point(x_world)
    assert np.allclose(got, expect, atol=1e-6)


def test_transforms_round_trip(tmp_path):
    sol = _solution(video=False)
    path = export_transforms(sol, tmp_path / "transforms.json")
    raw = json.loads(path.read_text())
    assert raw["camera_model"] == "OPENCV" and raw["ply_file_path"] == "points.ply"
    assert raw["frames"][0]["file_path"] == "images/img_0.jpg"
    doc = import_transforms(path, fps=25.0)
    keep = _registered(sol)
    assert [f["source"] for f in doc["frames"]] == [sol.sources[i] for i in keep]
    assert np.allclose(camera_file.matrices(doc), sol.matrix_world[keep])
    assert doc["frames"][0]["focal_px"] == pytest.approx(sol.focal_px)
    assert doc["distortion"]["k1"] == pytest.approx(sol.k1) and doc["fps"] == 25.0


def test_transforms_import_per_frame_intrinsics_and_errors(tmp_path):
    m = np.eye(4).tolist()
    good = {"w": 640, "h": 480, "frames": [
        {"file_path": "images/frame_000002.png", "transform_matrix": m, "fl_x": 500, "fl_y": 500, "cx": 320, "cy": 240},
        {"file_path": "images/frame_000001.png", "transform_matrix": m, "fl_x": 510, "fl_y": 510, "cx": 321, "cy": 240}]}
    p = tmp_path / "t.json"
    p.write_text(json.dumps(good))
    doc = import_transforms(p)
    assert [f["source"] for f in doc["frames"]] == ["1", "2"]
    assert [f["focal_px"] for f in doc["frames"]] == [510, 500]
    for mutate, msg in [(lambda d: d["frames"][0].update(fl_y=700), "non-square"),
                        (lambda d: d.update(p1=0.01), "tangential"),
                        (lambda d: d["frames"][1].update(transform_matrix=[[1, 0]]), "transform_matrix"),
                        (lambda d: d.update(frames=[]), "frames"),
                        (lambda d: d.update(camera_model="FISHEYE"), "FISHEYE")]:
        bad = json.loads(json.dumps(good))
        mutate(bad)
        p.write_text(json.dumps(bad))
        with pytest.raises(CameraFileError, match=msg) as err:
            import_transforms(p)
        assert str(p) in str(err.value)


def test_colmap_import_errors(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    with pytest.raises(CameraFileError, match="cameras.txt: file not found"):
        import_colmap_text(d)
    (d / "cameras.txt").write_text("1 OPENCV_FISHEYE 10 10 1 1 5 5 0 0 0 0\n")
    with pytest.raises(CameraFileError, match="unsupported camera model"):
        import_colmap_text(d)
    (d / "cameras.txt").write_text("1 PINHOLE 10 10 8 9 5 5\n")
    with pytest.raises(CameraFileError, match="fx=8.0 != fy=9.0"):
        import_colmap_text(d)
    (d / "cameras.txt").write_text("1 SIMPLE_RADIAL 10 10 8 5 5 0.1\n")
    (d / "images.txt").write_text("# nothing\n")
    with pytest.raises(CameraFileError, match="no images"):
        import_colmap_text(d)


def test_write_outputs_files_agree(tmp_path):
    sol = _solution()
    files = write_outputs(sol, tmp_path)
    assert files[0] == "cameras.json"
    doc = camera_file.read(tmp_path / "cameras.json")
    assert len(doc["frames"]) == 6 and doc["frames"][2]["registered"] is False
    back = PoseSolution.from_document(doc)
    assert np.allclose(back.matrix_world, sol.matrix_world) and back.k2 == pytest.approx(sol.k2)
    colmap = import_colmap_text(tmp_path / "colmap")
    ns = import_transforms(tmp_path / "transforms.json")
    assert np.allclose(camera_file.matrices(colmap), camera_file.matrices(ns))
