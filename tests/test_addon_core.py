"""The add-on's bpy-free layer, in plain Python: PLY points, GLB checks, placement maths,
camera channels, and the extension build's wheel selection and manifest."""
from __future__ import annotations

import json
import math
import struct
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from blender_addon.core import camera_math, placement, ply_points
from shared_protocol import glb_check
from blender_addon.core.backend_link import _file_names
from conftest import SHARED_DATA, needs_shared_data

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import build_addon  # noqa: E402

GLB = SHARED_DATA / "glb"


# -- PLY ----------------------------------------------------------------------------------
def _ply(fmt: str, xyz, rgb, extra_element: bool = False) -> bytes:
    n = len(xyz)
    head = (f"ply\nformat {fmt} 1.0\ncomment test\nelement vertex {n}\nproperty float x\nproperty float y\n"
            "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n")
    if extra_element:
        head += "element face 0\nproperty list uchar int vertex_indices\n"
    head += "end_header\n"
    if fmt == "ascii":
        body = "".join(f"{a} {b} {c} {r} {g} {bl}\n" for (a, b, c), (r, g, bl) in zip(xyz.tolist(), rgb.tolist()))
        return head.encode() + body.encode()
    order = "<" if fmt == "binary_little_endian" else ">"
    rec = np.empty(n, dtype=[("x", order + "f4"), ("y", order + "f4"), ("z", order + "f4"),
                             ("r", "u1"), ("g", "u1"), ("b", "u1")])
    rec["x"], rec["y"], rec["z"] = xyz.T
    rec["r"], rec["g"], rec["b"] = rgb.T
    return head.encode() + rec.tobytes()


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
def test_ply_points_round_trip(tmp_path, fmt):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(50, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, size=(50, 3), dtype=np.uint8)
    p = tmp_path / "p.ply"
    p.write_bytes(_ply(fmt, xyz, rgb, extra_element=True))
    got_xyz, got_rgb = ply_points.read_points(p)
    assert np.allclose(got_xyz, xyz, atol=1e-6 if fmt == "ascii" else 0)
    assert np.array_equal(got_rgb, rgb)


def test_ply_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"not a ply")
    with pytest.raises(ply_points.PlyError, match="bad.ply: not a PLY"):
        ply_points.read_points(bad)
    short = tmp_path / "short.ply"
    short.write_bytes(_ply("binary_little_endian", np.zeros((10, 3), np.float32), np.zeros((10, 3), np.uint8))[:-20])
    with pytest.raises(ply_points.PlyError, match="short.ply: truncated"):
        ply_points.read_points(short)
    with pytest.raises(ply_points.PlyError, match="missing.ply"):
        ply_points.read_points(tmp_path / "missing.ply")


# -- GLB checks ---------------------------------------------------------------------------
SUPPORTED = ["KHR_texture_transform", "KHR_materials_sheen", "KHR_draco_mesh_compression", "KHR_mesh_quantization"]


def _glb(doc: dict, bin_chunk: bytes = b"") -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js
    if bin_chunk:
        bin_chunk += b"\0" * (-len(bin_chunk) % 4)
        body += struct.pack("<II", len(bin_chunk), 0x004E4942) + bin_chunk
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


def _triangle_doc(positions: np.ndarray, stride: int = 0, sparse_nan: bool = False):
    data = positions.astype("<f4")
    if stride:
        padded = np.zeros((len(data), stride // 4), "<f4")
        padded[:, :3] = data
        data = padded
    buf = data.tobytes()
    acc = {"bufferView": 0, "componentType": 5126, "count": len(positions), "type": "VEC3"}
    views = [{"buffer": 0, "byteLength": len(buf), **({"byteStride": stride} if stride else {})}]
    if sparse_nan:
        idx = np.array([1], "<u2").tobytes() + b"\0\0"
        val = np.array([np.nan, 0, 0], "<f4").tobytes()
        views += [{"buffer": 0, "byteOffset": len(buf), "byteLength": 2},
                  {"buffer": 0, "byteOffset": len(buf) + 4, "byteLength": 12}]
        acc["sparse"] = {"count": 1, "indices": {"bufferView": 1, "componentType": 5123},
                         "values": {"bufferView": 2}}
        buf += idx + val
    doc = {"asset": {"version": "2.0"}, "buffers": [{"byteLength": len(buf)}], "bufferViews": views,
           "accessors": [acc], "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
           "nodes": [{"mesh": 0}], "scenes": [{"nodes": [0]}]}
    return doc, buf


def test_glb_positions_are_checked_with_strides_and_sparse(tmp_path):
    tri = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)
    ok = tmp_path / "ok.glb"
    ok.write_bytes(_glb(*_triangle_doc(tri, stride=16)))
    assert glb_check.inspect(ok, SUPPORTED).gltf["asset"]["version"] == "2.0"
    bad = tri.copy()
    bad[2, 1] = np.inf
    inf = tmp_path / "inf.glb"
    inf.write_bytes(_glb(*_triangle_doc(bad, stride=16)))
    with pytest.raises(glb_check.GlbError, match="inf.glb: 1 non-finite vertex positions"):
        glb_check.inspect(inf, SUPPORTED)
    sparse = tmp_path / "sparse.glb"
    sparse.write_bytes(_glb(*_triangle_doc(tri, sparse_nan=True)))
    with pytest.raises(glb_check.GlbError, match="non-finite"):
        glb_check.inspect(sparse, SUPPORTED)


@pytest.mark.parametrize("content,code", [
    (b"", "not_glb"), (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n", "lfs_pointer"),
    (b"  <!doctype html><html></html>", "html"), (b'{"asset": {"version": "2.0"}}', "not_glb"),
    (b"\x00\x01binary junk that is long enough", "not_glb"),
])
def test_glb_sniffing(tmp_path, content, code):
    p = tmp_path / "x.glb"
    p.write_bytes(content)
    with pytest.raises(glb_check.GlbError) as info:
        glb_check.inspect(p, SUPPORTED)
    assert info.value.code == code and "x.glb" in str(info.value)


def test_glb_required_extension_against_supported_list(tmp_path):
    doc, buf = _triangle_doc(np.eye(3))
    doc["extensionsUsed"] = doc["extensionsRequired"] = ["EXT_meshopt_compression"]
    p = tmp_path / "m.glb"
    p.write_bytes(_glb(doc, buf))
    with pytest.raises(glb_check.GlbError, match="requires glTF extension EXT_meshopt_compression"):
        glb_check.inspect(p, SUPPORTED)
    doc["extensionsUsed"] = doc["extensionsRequired"] = ["KHR_texture_transform"]
    p.write_bytes(_glb(doc, buf))
    assert glb_check.inspect(p, SUPPORTED).extensions_required == ["KHR_texture_transform"]


@needs_shared_data("glb", "malformed", "BoxBadNormals.glb")
def test_shared_bad_normals_file_warns():
    info = glb_check.inspect(GLB / "malformed" / "BoxBadNormals.glb", SUPPORTED)
    assert any("normals" in w for w in info.warnings)


# -- placement ----------------------------------------------------------------------------
def test_scale_for_dimension_axes():
    lo, hi = np.array([-1.0, -2.0, 0.0]), np.array([1.0, 2.0, 0.5])
    assert placement.scale_for_dimension(lo, hi, 2.0, "LARGEST") == pytest.approx(0.5)
    assert placement.scale_for_dimension(lo, hi, 2.0, "HEIGHT") == pytest.approx(4.0)
    assert placement.scale_for_dimension(lo, hi, 2.0, "WIDTH") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="zero height"):
        placement.scale_for_dimension(lo, np.array([1.0, 2.0, 0.0]), 1.0, "HEIGHT")
    with pytest.raises(ValueError, match="positive"):
        placement.scale_for_dimension(lo, hi, 0.0)


def test_product_matrix_on_a_tilted_plane():
    n = np.array([0.0, math.sin(0.3), math.cos(0.3)])
    p0 = np.array([0.0, 0.0, 1.0])
    m = placement.product_matrix(p0, n, cursor=[2.0, 1.0, 5.0], rotation_z=0.7, scale=2.0)
    r = m[:3, :3] / 2.0
    assert np.allclose(r.T @ r, np.eye(3), atol=1e-12) and np.linalg.det(r) == pytest.approx(1.0)
    assert np.allclose(r[:, 2], n, atol=1e-12)                 # local up = plane normal
    assert abs((m[:3, 3] - p0) @ n) < 1e-12                    # origin on the plane
    assert np.allclose(np.cross(m[:3, 3] - [2.0, 1.0, 5.0], n), 0, atol=1e-12)  # straight below the cursor


# -- camera channels ----------------------------------------------------------------------
def test_poses_to_channels_reconstructs_matrices_and_is_continuous():
    rng = np.random.default_rng(2)
    mats = []
    for a in np.linspace(0, 4 * np.pi, 60):
        c, s = math.cos(a), math.sin(a)
        m = np.eye(4)
        m[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
        m[:3, 3] = rng.normal(size=3)
        mats.append(m)
    loc, q = camera_math.poses_to_channels(np.array(mats))
    assert np.all(np.einsum("ij,ij->i", q[1:], q[:-1]) >= 0)
    w, x, y, z = q.T
    rz = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    assert np.allclose(np.cos(rz), [m[0, 0] for m in mats]) and np.allclose(loc, [m[:3, 3] for m in mats])


def test_intrinsics_per_frame_arrays():
    out = camera_math.intrinsics_to_blender(1920, 1080, [1500.0, 1600.0, 1500.0], 1000.0, 500.0)
    assert out["lens"].tolist() == pytest.approx([1500 * 36 / 1920, 1600 * 36 / 1920, 1500 * 36 / 1920])
    assert out["shift_x"] == pytest.approx([(960 - 1000) / 1920] * 3)
    assert out["shift_y"] == pytest.approx([(500 - 540) / 1920] * 3)


# -- build --------------------------------------------------------------------------------
@pytest.mark.parametrize("name,python,platform,ok", [
    ("pyzmq-27.1.0-cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl", "3.11", "linux-x64", True),
    ("pyzmq-27.1.0-cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl", "3.13", "linux-x64", False),
    ("pyzmq-27.1.0-cp312-abi3-win_amd64.whl", "3.13", "windows-x64", True),
    ("pyzmq-27.1.0-cp312-abi3-win_amd64.whl", "3.11", "windows-x64", False),
    ("pyzmq-27.1.0-cp311-cp311-macosx_10_15_universal2.whl", "3.11", "macos-arm64", True),
    ("pyzmq-27.1.0-cp311-cp311-macosx_10_15_universal2.whl", "3.11", "macos-x64", True),
    ("pyzmq-27.1.0-cp311-cp311-win_amd64.whl", "3.11", "linux-x64", False),
])
def test_wheel_matching(name, python, platform, ok):
    assert build_addon.wheel_matches(name, python, platform) is ok


def test_rendered_manifest_is_valid_toml_with_wheels_at_top_level():
    text = (REPO / "blender_addon" / "blender_manifest.toml").read_text()
    wheels = [Path("pyzmq-27.1.0-cp311-cp311-win_amd64.whl")]
    doc = tomllib.loads(build_addon.render_manifest(text, wheels))
    assert doc["wheels"] == ["./wheels/pyzmq-27.1.0-cp311-cp311-win_amd64.whl"]
    assert set(doc["platforms"]) == set(build_addon.PLATFORMS)
    assert doc["blender_version_min"] == "4.2.0" and set(doc["permissions"]) == {"files", "network"}


def test_result_file_manifest_shapes():
    assert _file_names(["a.json", "b.ply"]) == ["a.json", "b.ply"]
    assert _file_names([{"name": "a.json", "size": 3}]) == ["a.json"]
    assert _file_names({"a.json": {"size": 3}}) == ["a.json"]
    assert _file_names(None) == []
