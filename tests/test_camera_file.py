"""cameras.json: round trip, defaults, and validation errors that name the field."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from shared_protocol import camera_file
from shared_protocol.camera_file import CameraFileError


def _doc(n=3):
    rng = np.random.default_rng(1)
    mats = []
    for i in range(n):
        q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        q *= np.sign(np.linalg.det(q))
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = q, rng.normal(size=3)
        mats.append(m)
    return camera_file.make_document(
        1920, 1080, 23.976, mats, 1500.0, (960.0, 540.0), sources=[str(10 + i) for i in range(n)],
        registered=[True, False, True][:n], reproj_error_px=[0.3, float("nan"), 0.25][:n],
        k1=-0.05, k2=0.01, ground_plane={"point": [0, 0, 0], "normal": [0, 0, 1]},
        stats={"n_registered": 2})


def test_round_trip(tmp_path):
    doc = _doc()
    path = tmp_path / "cameras.json"
    camera_file.write(path, doc)
    back = camera_file.read(path)
    assert back == json.loads(json.dumps(doc))
    assert np.allclose(camera_file.matrices(back), camera_file.matrices(doc))
    assert back["frames"][1]["registered"] is False
    assert back["frames"][1]["reproj_error_px"] is None
    assert back["frames"][0]["source"] == "10"
    k = camera_file.intrinsics_matrix(back["frames"][0])
    assert np.allclose(k, [[1500, 0, 960], [0, 1500, 540], [0, 0, 1]])
    assert not list(tmp_path.glob(".cameras-*"))


def test_optional_parts_default_and_unknown_keys_survive(tmp_path):
    doc = _doc()
    for key in ("distortion", "ground_plane", "stats", "fps"):
        del doc[key]
    doc["frames"][0]["extra"] = "kept"
    doc["future"] = {"x": 1}
    del doc["frames"][0]["registered"]
    out = camera_file.validate(doc)
    assert out["distortion"] == {"model": "radial2", "k1": 0.0, "k2": 0.0}
    assert out["ground_plane"] is None and out["stats"] == {} and out["fps"] == 0.0
    assert out["frames"][0]["registered"] is True
    camera_file.write(tmp_path / "c.json", out)
    back = camera_file.read(tmp_path / "c.json")
    assert back["future"] == {"x": 1} and back["frames"][0]["extra"] == "kept"


BAD = [
    (lambda d: d.pop("frames"), "frames: missing"),
    (lambda d: d.update(version=2), "version"),
    (lambda d: d.update(convention="opencv"), "convention"),
    (lambda d: d.update(width=0), "width"),
    (lambda d: d.update(height=1.5), "height"),
    (lambda d: d.update(frames=[]), "frames"),
    (lambda d: d["frames"][1].update(focal_px=-3), "frames[1].focal_px"),
    (lambda d: d["frames"][0].update(focal_px=float("nan")), "frames[0].focal_px"),
    (lambda d: d["frames"][2].update(principal_point_px=[1]), "frames[2].principal_point_px"),
    (lambda d: d["frames"][0].update(matrix_world=[[1, 0, 0, 0]] * 4), "frames[0].matrix_world"),
    (lambda d: d["frames"][0]["matrix_world"][0].__setitem__(0, 2.0), "frames[0].matrix_world"),
    (lambda d: d["frames"][0].update(registered="yes"), "frames[0].registered"),
    (lambda d: d["frames"][0].update(source=3), "frames[0].source"),
    (lambda d: d["frames"][0].update(frame=-1), "frames[0].frame"),
    (lambda d: d["frames"][0].update(reproj_error_px=-1), "frames[0].reproj_error_px"),
    (lambda d: d["distortion"].update(model="opencv"), "distortion.model"),
    (lambda d: d["distortion"].update(k1="x"), "distortion.k1"),
    (lambda d: d["ground_plane"].update(normal=[0, 0, 2]), "ground_plane.normal"),
    (lambda d: d.update(stats=[]), "stats"),
]


@pytest.mark.parametrize("mutate,field", BAD)
def test_validation_names_the_field(mutate, field):
    doc = copy.deepcopy(_doc())
    mutate(doc)
    with pytest.raises(CameraFileError) as err:
        camera_file.validate(doc)
    assert str(err.value).startswith(field)


def test_read_errors_name_the_file(tmp_path):
    p = tmp_path / "cameras.json"
    with pytest.raises(CameraFileError, match="not found"):
        camera_file.read(p)
    p.write_text("{broken")
    with pytest.raises(CameraFileError, match="not valid JSON"):
        camera_file.read(p)
    p.write_text(json.dumps({"version": 1}))
    with pytest.raises(CameraFileError, match=r"cameras.json: convention: missing"):
        camera_file.read(p)


def test_write_refuses_invalid_and_leaves_nothing(tmp_path):
    doc = _doc()
    doc["frames"][0]["focal_px"] = 0
    with pytest.raises(CameraFileError):
        camera_file.write(tmp_path / "cameras.json", doc)
    assert list(tmp_path.iterdir()) == []
