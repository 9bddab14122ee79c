"""Splat import into Blender: the numpy PLY reader against plyfile, activation formulas, the
attributes Blender stores, the preview's display fraction, and a Cycles render of the
geometry-nodes preview against the pinhole projection of known splats.

The add-on's bpy-free modules are imported directly: the package loads its bpy layer only
where bpy is already loaded, so bpy stays out of the pytest process.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from backend.pipelines import splats_io
from backend.pipelines.reconstruct.outputs import splat_payload

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "blender_scripts"))
from bpy_subprocess import run_script  # noqa: E402
from blender_addon.splats import ply as ply  # noqa: E402 (bpy-free)
from blender_addon.splats import attributes as attributes  # noqa: E402 (bpy-free)


C0 = 0.28209479177387814


def srgb_to_linear(c):
    c = np.clip(c, 0, 1)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def random_splats(n: int, k: int, seed: int = 0) -> splats_io.Splats:
    rng = np.random.default_rng(seed)
    return splats_io.Splats(means=rng.normal(size=(n, 3)), scales=rng.normal(-3, 0.5, (n, 3)),
                            quats=rng.normal(size=(n, 4)), opacities=rng.normal(0, 2, n),
                            sh0=rng.normal(0, 1, (n, 3)), shN=rng.normal(0, 0.2, (n, k, 3)))


def known_splats() -> splats_io.Splats:
    """Five splats whose activated values are easy to state exactly."""
    return splats_io.Splats(
        means=[[0, 0, 0], [1.5, -2.0, 0.25], [-0.5, 0.5, 3.0], [10, 0, 0], [0, 0, -1]],
        scales=np.log([[0.1, 0.2, 0.3], [1, 1, 1], [0.01, 0.01, 0.05], [2, 0.5, 0.25], [0.3, 0.3, 0.3]]),
        quats=[[1, 0, 0, 0], [0, 2, 0, 0], [1, 1, 1, 1], [0.6, 0, 0.8, 0], [0, 0, 0, 3]],
        opacities=[0.0, math.log(3.0), -math.log(3.0), 8.0, -8.0],          # 0.5, 0.75, 0.25, ...
        sh0=[[0, 0, 0], [0.5 / C0, -0.5 / C0, 0], [0.25 / C0, 0, -0.25 / C0], [3, -3, 0.1], [0.1, 0.2, 0.3]],
        shN=np.arange(5 * 3 * 3, dtype=float).reshape(5, 3, 3) / 100.0)


def expected(s: splats_io.Splats) -> dict:
    q = np.asarray(s.quats, float)
    return {"opacity": 1 / (1 + np.exp(-s.opacities.astype(float))),
            "scale": np.exp(s.scales.astype(float)),
            "rotation": q / np.linalg.norm(q, axis=1, keepdims=True),
            "rgb": srgb_to_linear(0.5 + C0 * s.sh0.astype(float))}


# ------------------------------------------------------------------ reader (no bpy)


@pytest.mark.parametrize("k", [0, 3, 15])
def test_numpy_reader_matches_plyfile(tmp_path, k):
    s = random_splats(300, k, seed=k)
    path = tmp_path / "s.ply"
    splats_io.write_ply(s, path, sh_rest=3 * k)
    ref = splats_io.read_ply(path)
    got = ply.read_ply(path)
    for a, b in [(got.means, ref.means), (got.sh0, ref.sh0), (got.shN, ref.shN), (got.opacities, ref.opacities),
                 (got.scales, ref.scales), (got.quats, ref.quats)]:
        np.testing.assert_array_equal(a, b)


def _plyfile_copy(src: Path, dst: Path, *, byte_order="<", text=False, double=False):
    v = PlyData.read(str(src))["vertex"].data
    names = v.dtype.names
    dt = [(n, "f8" if double else "f4") for n in names]
    arr = np.empty(len(v), dtype=dt)
    for n in names:
        arr[n] = v[n]
    PlyData([PlyElement.describe(arr, "vertex")], text=text, byte_order=byte_order).write(str(dst))


@pytest.mark.parametrize("variant", [dict(byte_order=">"), dict(double=True), dict(text=True)])
def test_reader_encodings(tmp_path, variant):
    s = random_splats(50, 3, seed=1)
    splats_io.write_ply(s, tmp_path / "a.ply", sh_rest=9)
    _plyfile_copy(tmp_path / "a.ply", tmp_path / "b.ply", **variant)
    a, b = ply.read_ply(tmp_path / "a.ply"), ply.read_ply(tmp_path / "b.ply")
    tol = 1e-6 if variant.get("text") else 0                 # ASCII prints float32 values in decimal
    for x, y in [(a.means, b.means), (a.shN, b.shN), (a.quats, b.quats), (a.opacities, b.opacities)]:
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


def test_reader_errors_name_the_file(tmp_path):
    s = random_splats(20, 0)
    good = tmp_path / "good.ply"
    splats_io.write_ply(s, good, sh_rest=0)
    cut = tmp_path / "cut.ply"
    cut.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(ply.SplatFileError, match="cut.ply: truncated"):
        ply.read_ply(cut)
    (tmp_path / "text.ply").write_text("hello")
    with pytest.raises(ply.SplatFileError, match="text.ply: not a PLY"):
        ply.read_ply(tmp_path / "text.ply")
    mesh = tmp_path / "mesh.ply"
    PlyData([PlyElement.describe(np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")]), "vertex")]).write(str(mesh))
    with pytest.raises(ply.SplatFileError, match="mesh.ply: not a Gaussian-splat PLY .missing f_dc_0"):
        ply.read_ply(mesh)
    comp = tmp_path / "comp.ply"
    splats_io.write_compressed_ply(random_splats(300, 0), comp)
    with pytest.raises(ply.SplatFileError, match="comp.ply: compressed"):
        ply.read_ply(comp)
    with pytest.raises(ply.SplatFileError, match="missing.ply: file not found"):
        ply.read_ply(tmp_path / "missing.ply")


def test_activation_formulas(tmp_path):
    s = known_splats()
    splats_io.write_ply(s, tmp_path / "k.ply", sh_rest=9)
    a = attributes.load(tmp_path / "k.ply")
    e = expected(s)
    np.testing.assert_allclose(a.opacity, [0.5, 0.75, 0.25, 1 / (1 + math.exp(-8)), 1 / (1 + math.exp(8))], rtol=1e-6)
    np.testing.assert_allclose(a.opacity, e["opacity"], rtol=1e-6)
    np.testing.assert_allclose(a.scale[0], [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(a.rotation[1], [0, 1, 0, 0], atol=1e-7)
    np.testing.assert_allclose(a.rotation[2], [0.5, 0.5, 0.5, 0.5], atol=1e-7)
    np.testing.assert_allclose(a.rotation, e["rotation"], atol=1e-7)
    # DC colour 0.5 + C0 * f_dc: (0.5, 0.5, 0.5), (1, 0, 0.5), (0.75, 0.5, 0.25); then sRGB -> linear
    np.testing.assert_allclose(a.color[:3, :3], srgb_to_linear(np.array([[0.5] * 3, [1, 0, 0.5], [0.75, 0.5, 0.25]])),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.color[:, 3], a.opacity)
    np.testing.assert_array_equal(a.sh[:, 0], s.sh0)
    np.testing.assert_array_equal(a.sh[:, 1:], s.shN)
    assert a.sh_degree == 1


def test_backend_payload_gives_the_same_attributes(tmp_path):
    s = random_splats(200, 8, seed=4)
    s.sh0[:] = np.clip(s.sh0, -1.7, 1.7)                      # colours inside (0, 1): sh_0 recoverable
    splats_io.write_ply(s, tmp_path / "p.ply", sh_rest=24)
    from_ply = attributes.load(tmp_path / "p.ply")
    from_payload = attributes.from_payload(splat_payload(s))
    for name in ("positions", "color", "opacity", "scale", "rotation"):
        np.testing.assert_allclose(getattr(from_payload, name), getattr(from_ply, name), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_payload.sh, from_ply.sh, rtol=1e-4, atol=2e-5)


# ------------------------------------------------------------------ Blender (subprocesses)


def test_blender_object_carries_the_attributes(tmp_path):
    s = known_splats()
    splats_io.write_ply(s, tmp_path / "k.ply", sh_rest=9)
    run_script("splat_preview.py", "attrs", tmp_path / "k.ply", tmp_path / "a.npz", user_dir=tmp_path / "u", timeout=120)
    got = np.load(tmp_path / "a.npz")
    e = expected(s)
    np.testing.assert_array_equal(got["matrix_world"], np.eye(4))            # the cameras' world
    assert int(got["count"]) == 5 and bool(got["has_preview"])
    np.testing.assert_array_equal(got["positions"], s.means)
    np.testing.assert_allclose(got["attr:opacity:FLOAT"], e["opacity"], rtol=1e-6)
    np.testing.assert_allclose(got["attr:scale:FLOAT_VECTOR"], e["scale"], rtol=1e-6)
    np.testing.assert_allclose(got["attr:rotation:QUATERNION"], e["rotation"], atol=1e-7)
    color = got["attr:color:FLOAT_COLOR"]
    np.testing.assert_allclose(color[:, :3], e["rgb"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(color[:, 3], e["opacity"], rtol=1e-6)
    np.testing.assert_array_equal(got["attr:sh_0:FLOAT_VECTOR"], s.sh0)
    for k in range(1, 4):
        np.testing.assert_array_equal(got[f"attr:sh_{k}:FLOAT_VECTOR"], s.shN[:, k - 1])
    assert "attr:sh_4:FLOAT_VECTOR" not in got.files


def test_display_fraction_keeps_the_requested_share(tmp_path):
    n = 20000
    splats_io.write_ply(random_splats(n, 0, seed=2), tmp_path / "many.ply", sh_rest=0)
    run_script("splat_preview.py", "fraction", tmp_path / "many.ply", tmp_path / "f.json", 1.0, 0.25, 0.05, 0.0,
               user_dir=tmp_path / "u", timeout=120)
    got = json.loads((tmp_path / "f.json").read_text())
    assert got["count"] == n
    inst = got["instances"]
    assert inst["1.0"] == n and inst["0.0"] == 0
    for f in (0.25, 0.05):
        sigma = math.sqrt(n * f * (1 - f))                   # Bernoulli selection: binomial count
        assert abs(inst[str(f)] - n * f) < 5 * sigma, (f, inst[str(f)])


@pytest.mark.parametrize("engine", ["CYCLES", "EEVEE"])
def test_preview_renders_where_the_splats_project(tmp_path, engine):
    """Four splats seen by a 96x72 pinhole camera (f = 80 px) from 3 m: an opaque red one on
    the axis, an opaque green one 0.75 m to its right, a nearly transparent (alpha 0.0025)
    blue one 1 m in front of the red one, and a yellow needle 0.75 m to the left, rotated. With splat size 2 and sigma 0.12 m the ellipsoids
    project to discs of radius 80 * 0.24 / 3 = 6.4 px (red) and 80 * 0.24 / 3.09 = 6.2 px
    (green) around u = 48 and u = 48 + 80 * 0.75 / 3 = 68. Pixels 2 px from the centres lie
    well inside; the image corner sees the black world."""
    import cv2
    w, h, f = 96, 72, 80.0
    c2w = np.eye(4)
    c2w[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]           # looks along +Y, +Z up
    c2w[:3, 3] = [0, -3, 0.5]
    half = math.radians(30) / 2                                # 30 deg about +Y, (w, x, y, z)
    rotations = np.array([[1.0, 0, 0, 0]] * 3 + [[math.cos(half), 0, math.sin(half), 0]])
    scales = np.full((4, 3), 0.12)
    scales[3] = [0.15, 0.03, 0.03]                             # a needle along its local x
    np.savez(tmp_path / "scene.npz", width=w, height=h, focal_px=f, c2w=c2w, splat_size=2.0,
             positions=np.array([[0, 0, 0.5], [0.75, 0, 0.5], [0, -1, 0.5], [-0.75, 0, 0.5]], np.float32),
             colors=np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], np.float32),
             opacity=np.array([1.0, 1.0, 0.0025, 1.0], np.float32), scales=scales, rotations=rotations)
    run_script("splat_preview.py", "render", tmp_path / "scene.npz", tmp_path / "r.png", engine,
               user_dir=tmp_path / "u", timeout=180)
    img = cv2.imread(str(tmp_path / "r.png"), cv2.IMREAD_COLOR)[:, :, ::-1] / 255.0
    assert img.shape == (h, w, 3)

    def px(u, v):
        return img[int(v), int(u)]

    # Cycles integrates the 0.25 % blue exactly; EEVEE's dithered transparency draws it on a
    # random alpha share of its 64 samples: blue <= a + 5 sqrt(a (1 - a) / 64) = 0.034 linear,
    # 0.2 in sRGB
    blue_max = 0.1 if engine == "CYCLES" else 0.2
    for du, dv in [(0, 0), (2, 0), (0, -2), (-2, 1)]:
        r, g, b = px(48 + du, 36 + dv)
        assert r > 0.9 and g < 0.1 and b < blue_max, (du, dv, r, g, b)
        r, g, b = px(68 + du, 36 + dv)
        assert g > 0.9 and r < 0.1 and b < 0.1, (du, dv, r, g, b)
    assert img[:5, :5].max() < 0.05 and img[-5:, -5:].max() < 0.05
    red = (img[:, :, 0] > 0.5) & (img[:, :, 1] < 0.2)
    ys, xs = np.nonzero(red)
    assert abs(xs.mean() + 0.5 - 48) < 0.5 and abs(ys.mean() + 0.5 - 36) < 0.5   # centred on the projection
    assert 6.4 * 0.8 < math.sqrt(red.sum() / math.pi) < 6.4 * 1.1                # disc of the stated radius
    # the needle: rotating its local x by +30 deg about +Y gives world (cos 30, 0, -sin 30), which
    # the camera (x right, world z up = image up) sees going down to the right at 30 deg
    yellow = (img[:, :, 0] > 0.5) & (img[:, :, 1] > 0.5) & (img[:, :, 2] < 0.3)
    ys, xs = np.nonzero(yellow)
    assert abs(xs.mean() + 0.5 - (48 - 80 * 0.75 / 3)) < 0.5 and abs(ys.mean() + 0.5 - 36) < 0.5
    cov = np.cov(np.stack([xs, ys]))
    angle = 0.5 * math.degrees(math.atan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1]))
    assert abs(angle - 30.0) < 5.0, angle
    length = 4 * math.sqrt(np.linalg.eigvalsh(cov)[-1])        # filled ellipse: semi-axis = 2 sd
    assert 0.8 < length / (2 * 80 * 0.3 / 3) < 1.1, length     # 2 * f * (2 * 0.15 m) / 3 m = 16 px
