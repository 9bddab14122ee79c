"""Product insertion with Blender's glTF importer, for every GLB in ../shared/data/glb.

Good files must import completely (every glTF mesh node becomes a mesh object under one
root empty), be scaled so their largest extent equals the requested real size, stand on the
ground plane (lowest point on it) centred under the 3D cursor and turned about Z by the
requested angle. Bad files must fail with an error naming the cause and leave bpy.data and
the scene exactly as they were; so must a failure injected after the importer has run.
"""
from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "blender_scripts"))
from bpy_subprocess import DATA, run_script  # noqa: E402

from conftest import needs_shared_data  # noqa: E402

GLB = DATA / "glb"
GROUND_Z, CURSOR = 0.25, (0.4, -0.3, 1.0)
DIM, ROT = 0.5, math.radians(30.0)
# geometry passes through float32 vertex storage and matrices: ~1e-7 relative
REL_TOL = 1e-5

GOOD = sorted(p for d in ("products", "basic", "animated") for p in (GLB / d).glob("*.glb"))
EXPECTED_ERRORS = {
    "lfs_pointer_BoomBox": "Git LFS pointer",
    "BoxWithInfinites": "non-finite vertex positions",
    "BoxMeshopt": "EXT_meshopt_compression",
}
DRACO = ("Box_Draco", "BoxTextured_Draco", "BrainStem_Draco")

pytestmark = needs_shared_data("glb")


def glb_json(path: Path) -> dict:
    data = path.read_bytes()
    n = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[20:20 + n])


def with_json(src: Path, dst: Path, edit) -> Path:
    """Copy a GLB with its JSON chunk edited by ``edit(dict)``."""
    data = src.read_bytes()
    n = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + n])
    edit(doc)
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    rest = data[20 + n:]
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + rest
    dst.write_bytes(b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body)
    return dst


def require_basisu(doc: dict) -> None:
    doc["extensionsUsed"] = doc.get("extensionsUsed", []) + ["KHR_texture_basisu"]
    doc["extensionsRequired"] = doc.get("extensionsRequired", []) + ["KHR_texture_basisu"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("glb")
    cases = [{"name": p.stem, "path": str(p), "dimension": DIM, "rotation_z": ROT} for p in GOOD]
    for d in ("unsupported", "malformed"):
        cases += [{"name": p.stem, "path": str(p), "dimension": DIM} for p in sorted((GLB / d).glob("*.glb"))]
    (tmp / "page.glb").write_text("<!DOCTYPE html>\n<html><head><title>404</title></head></html>\n")
    (tmp / "random.glb").write_bytes(bytes(range(256)) * 4)
    box = (GLB / "basic" / "Box.glb").read_bytes()
    (tmp / "truncated.glb").write_bytes(box[: len(box) // 2])
    with_json(GLB / "basic" / "BoxTextured.glb", tmp / "ktx2.glb", require_basisu)
    cases += [
        {"name": "html", "path": str(tmp / "page.glb"), "dimension": DIM},
        {"name": "random", "path": str(tmp / "random.glb"), "dimension": DIM},
        {"name": "truncated", "path": str(tmp / "truncated.glb"), "dimension": DIM},
        {"name": "ktx2", "path": str(tmp / "ktx2.glb"), "dimension": DIM},
        {"name": "missing", "path": str(tmp / "nope.glb"), "dimension": DIM},
        {"name": "draco_without_decoder", "path": str(GLB / "unsupported" / "Box_Draco.glb"),
         "dimension": DIM, "no_draco": True},
        {"name": "rollback_textured", "path": str(GLB / "basic" / "BoxTextured.glb"), "dimension": DIM,
         "fail_placement": True},
        {"name": "rollback_skinned", "path": str(GLB / "animated" / "CesiumMan.glb"), "dimension": DIM,
         "fail_placement": True},
    ]
    (tmp / "cases.json").write_text(json.dumps(cases))
    run_script("insert_products.py", tmp / "out.json", tmp / "cases.json", user_dir=tmp / "user")
    return json.loads((tmp / "out.json").read_text())


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_good_glb_imports_sized_and_placed(report, path):
    r = report[path.stem]
    assert r["error"] == "", r["error"]
    doc = glb_json(path)
    scene_nodes = doc["scenes"][doc.get("scene", 0)]["nodes"]

    def mesh_nodes(i):
        node = doc["nodes"][i]
        return ("mesh" in node) + sum(mesh_nodes(c) for c in node.get("children", []))

    assert r["mesh_objects"] == sum(mesh_nodes(i) for i in scene_nodes)
    assert r["all_new_under_root"], "every imported object hangs under the product root"
    if doc.get("skins"):
        assert r["armatures"] >= 1
    if doc.get("animations"):
        assert r["actions"] >= 1
    lo, hi = np.array(r["bbox_min"]), np.array(r["bbox_max"])
    ext = hi - lo
    assert abs(ext.max() - DIM) < REL_TOL * DIM, f"largest extent {ext.max()} != {DIM}"
    assert abs(lo[2]) < REL_TOL * DIM, "lowest point on the ground plane"
    assert np.allclose((lo[:2] + hi[:2]) / 2, 0, atol=REL_TOL * DIM), "centred on the root"
    assert np.allclose(r["origin"], [CURSOR[0], CURSOR[1], GROUND_Z], atol=1e-6), "cursor snapped to plane"
    c, s = math.cos(ROT), math.sin(ROT)
    assert np.allclose(r["rotation"], [[c, -s, 0], [s, c, 0], [0, 0, 1]], atol=1e-6)


@pytest.mark.parametrize("name", sorted(EXPECTED_ERRORS))
def test_bad_glb_gives_error_and_leaves_scene_unchanged(report, name):
    r = report[name]
    assert EXPECTED_ERRORS[name] in r["error"], r["error"]
    assert f"{name}.glb" in r["error"], "the error names the file"
    assert r["unchanged"], r.get("diff")


@pytest.mark.parametrize("name,needle", [
    ("html", "HTML page"), ("random", "not a GLB"), ("truncated", "truncated"),
    ("ktx2", "KHR_texture_basisu"), ("missing", "file not found"),
    ("draco_without_decoder", "KHR_draco_mesh_compression"),
    ("rollback_textured", "injected placement failure"), ("rollback_skinned", "injected placement failure"),
])
def test_synthetic_failures_leave_scene_unchanged(report, name, needle):
    r = report[name]
    assert needle in r["error"], r["error"]
    assert r["unchanged"], r.get("diff")


@pytest.mark.parametrize("name", DRACO)
def test_draco_follows_decoder_availability(report, name):
    """Draco imports exactly when the glTF add-on ships its decoder library."""
    r = report[name]
    if report["draco_available"]:
        assert r["error"] == "", r["error"]
        assert r["mesh_objects"] >= 1
        assert abs(max(np.subtract(r["bbox_max"], r["bbox_min"])) - DIM) < REL_TOL * DIM
    else:
        assert "KHR_draco_mesh_compression" in r["error"] and r["unchanged"]


def test_supported_extension_and_bad_normals_import(report):
    """KHR_texture_transform is decoded by Blender's importer; zero-length normals are
    recomputed by Blender and reported as a warning."""
    assert report["SheenCloth"]["error"] == ""
    assert report["BoxBadNormals"]["error"] == ""
    assert "normals" in report["BoxBadNormals"]["warnings"]
