"""Round trips of the splat file formats, with tolerances from each format's quantisation."""
from __future__ import annotations

import numpy as np
import pytest
from plyfile import PlyData

from backend.pipelines.splats_io import (
    SH_C0, SplatFormatError, Splats, load_splats, read_ply, read_splat, write_compressed_ply,
    write_ply, write_splat,
)


def random_splats(n: int, k: int, seed: int = 0) -> Splats:
    rng = np.random.default_rng(seed)
    return Splats(
        means=rng.normal(size=(n, 3)) * 2.0,
        scales=rng.uniform(-5, -1, size=(n, 3)),
        quats=rng.normal(size=(n, 4)),
        opacities=rng.uniform(-3, 3, size=n),
        sh0=rng.uniform(-1.5, 1.5, size=(n, 3)),
        shN=rng.uniform(-0.5, 0.5, size=(n, k, 3)),
    )


@pytest.mark.parametrize("k", [0, 3, 8, 15])
def test_ply_round_trip_is_exact(tmp_path, k):
    s = random_splats(300, k)
    write_ply(s, tmp_path / "a.ply")
    r = read_ply(tmp_path / "a.ply")
    for name in ("means", "scales", "quats", "opacities", "sh0"):
        np.testing.assert_array_equal(getattr(r, name), getattr(s, name))
    # the file always carries 45 f_rest values; missing bands read back as zeros
    assert r.shN.shape == (300, 15, 3)
    np.testing.assert_array_equal(r.shN[:, :k], s.shN)
    assert not r.shN[:, k:].any()


def test_ply_has_standard_3dgs_layout(tmp_path):
    s = random_splats(10, 15)
    write_ply(s, tmp_path / "a.ply")
    ply = PlyData.read(str(tmp_path / "a.ply"))
    names = list(ply["vertex"].data.dtype.names)
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                + [f"f_rest_{i}" for i in range(45)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert names == expected
    assert all(ply["vertex"].data.dtype[n] == np.float32 for n in names)
    # f_rest is channel-major: f_rest_0..14 are red's 15 coefficients
    v = ply["vertex"].data
    np.testing.assert_array_equal(v["f_rest_1"], s.shN[:, 1, 0])
    np.testing.assert_array_equal(v["f_rest_15"], s.shN[:, 0, 1])
    np.testing.assert_array_equal(v["f_rest_44"], s.shN[:, 14, 2])


def test_splat_round_trip_within_8bit_quantisation(tmp_path):
    s = random_splats(500, 0, seed=1)
    write_splat(s, tmp_path / "a.splat")
    assert (tmp_path / "a.splat").stat().st_size == 500 * 32
    r = read_splat(tmp_path / "a.splat")
    # the file is sorted by size x opacity: match rows by position (exact float32)
    order_s = np.lexsort(s.means.T)
    order_r = np.lexsort(r.means.T)
    s, r = s.subset(order_s), r.subset(order_r)
    np.testing.assert_array_equal(r.means, s.means)
    np.testing.assert_allclose(r.scales, s.scales, atol=1e-6)
    # colour and alpha are stored as round(v * 255): error <= 0.5/255
    assert np.abs(r.rgb() - s.rgb()).max() <= 0.5 / 255 + 1e-6
    assert np.abs(r.alpha() - np.clip(s.alpha(), 0.5 / 255, 1 - 0.5 / 255)).max() <= 0.5 / 255 + 1e-6
    # quaternion components are round(q * 128 + 128): error <= 0.5/128 per component before renormalising
    qs = s.unit_quats()
    qr = r.quats
    assert np.abs(qr - qs).max() <= 0.5 / 128 + 1e-6


def test_compressed_ply_round_trip_within_bit_budget(tmp_path):
    s = random_splats(700, 15, seed=2)  # three chunks, the last one partial
    write_compressed_ply(s, tmp_path / "c.ply")
    r = load_splats(tmp_path / "c.ply")
    assert len(r) == 700
    ci = np.arange(700) // 256
    for axis, bits in zip(range(3), (11, 10, 11)):
        for c in range(3):
            sel = ci == c
            span = np.ptp(s.means[sel, axis])
            assert np.abs(r.means[sel, axis] - s.means[sel, axis]).max() <= span / (2 ** bits - 1) / 2 + 1e-5
            span = np.ptp(s.scales[sel, axis])
            assert np.abs(r.scales[sel, axis] - s.scales[sel, axis]).max() <= span / (2 ** bits - 1) / 2 + 1e-5
    # smallest-three quaternion: each stored component quantised on 10 bits over [-1/sqrt2, 1/sqrt2]
    qs, qr = s.unit_quats(), r.unit_quats()
    dots = np.abs((qs * qr).sum(1))
    assert dots.min() > 1 - 1e-5
    # rgb on 8 bits over the chunk's range, alpha on 8 bits over [0, 1]
    assert np.abs(r.rgb() - s.rgb()).max() <= (np.ptp(0.5 + SH_C0 * s.sh0)) / 255 / 2 + 1e-5
    assert np.abs(r.alpha() - s.alpha()).max() <= 0.5 / 255 + 1e-5
    # SH rest: 8 bits over [-4, 4]
    assert np.abs(r.shN - s.shN).max() <= 8.0 / 256 + 1e-6


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(SplatFormatError, match="missing.ply"):
        load_splats(tmp_path / "missing.ply")
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all")
    with pytest.raises(SplatFormatError, match="junk.ply"):
        load_splats(tmp_path / "junk.ply")
    (tmp_path / "odd.splat").write_bytes(b"\0" * 33)
    with pytest.raises(SplatFormatError, match="odd.splat"):
        load_splats(tmp_path / "odd.splat")
    with pytest.raises(SplatFormatError, match="x.obj"):
        load_splats(tmp_path / "x.obj")
    # a point cloud PLY is not a splat PLY
    from plyfile import PlyElement
    pts = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(pts, "vertex")]).write(str(tmp_path / "pts.ply"))
    with pytest.raises(SplatFormatError, match="pts.ply.*f_dc_0"):
        load_splats(tmp_path / "pts.ply")


_BPY_IMPORT = """
import sys, json, bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
assert bpy.ops.wm.ply_import(filepath=sys.argv[1]) == {'FINISHED'}
me = [o for o in bpy.context.scene.objects if o.type == 'MESH'][0].data
co = [list(v.co) for v in me.vertices]
attrs = {a.name: [d.value for d in a.data] for a in me.attributes
         if a.domain == 'POINT' and a.name in ('f_dc_0', 'opacity', 'scale_2', 'rot_3', 'f_rest_44')}
print('JSON' + json.dumps({'co': co, 'attrs': attrs}))
"""


def test_blender_ply_importer_reads_positions_and_splat_attributes(tmp_path):
    """Blender's own PLY importer (bpy, in a subprocess) keeps our positions in its world and
    every splat property as a point attribute."""
    import json
    import subprocess
    import sys

    s = random_splats(50, 15, seed=4)
    write_ply(s, tmp_path / "s.ply")
    proc = subprocess.run([sys.executable, "-c", _BPY_IMPORT, str(tmp_path / "s.ply")],
                          capture_output=True, text=True, timeout=300)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")]
    assert proc.returncode == 0 and line, proc.stderr[-2000:]
    got = json.loads(line[0][4:])
    np.testing.assert_allclose(got["co"], s.means, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["attrs"]["f_dc_0"], s.sh0[:, 0], rtol=1e-6)
    np.testing.assert_allclose(got["attrs"]["opacity"], s.opacities, rtol=1e-6)
    np.testing.assert_allclose(got["attrs"]["scale_2"], s.scales[:, 2], rtol=1e-6)
    np.testing.assert_allclose(got["attrs"]["rot_3"], s.quats[:, 3], rtol=1e-6)
    np.testing.assert_allclose(got["attrs"]["f_rest_44"], s.shN[:, 14, 2], rtol=1e-6)


# ---------------------------------------------------------------- Niantic .spz -------------
import gzip  # noqa: E402
import struct  # noqa: E402

from backend.pipelines import splats_io  # noqa: E402
from backend.pipelines.splats_io import (  # noqa: E402
    read_spz, rotate_splats, sh_basis, sh_rotation, spz_header, write_spz,
)

B2R = splats_io._BLENDER_TO_RUB
Q_B2R = splats_io._Q_BLENDER_TO_RUB


def _quat_matrix(q):
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = (q[..., i] for i in range(4))
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(*q.shape[:-1], 3, 3)


def _sh_colour(splats: Splats, dirs: np.ndarray) -> np.ndarray:
    """Colour of every splat seen along ``dirs`` [N,3], evaluated by gsplat's own SH code."""
    import torch
    from gsplat.cuda._torch_impl import _spherical_harmonics

    coeffs = torch.as_tensor(np.concatenate([splats.sh0[:, None], splats.shN], 1), dtype=torch.float64)
    return _spherical_harmonics(splats.sh_degree, torch.as_tensor(dirs, dtype=torch.float64), coeffs).numpy()


def test_sh_basis_matches_gsplat():
    rng = np.random.default_rng(5)
    s = random_splats(200, 15, seed=5)
    d = rng.normal(size=(200, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    ours = SH_C0 * s.sh0 + np.einsum("nk,nkc->nc", sh_basis(d, 3), s.shN.astype(np.float64))
    np.testing.assert_allclose(ours, _sh_colour(s, d), atol=1e-5)


def test_blender_to_rub_is_a_proper_rotation_taking_up_to_up():
    assert np.allclose(B2R @ B2R.T, np.eye(3)) and np.isclose(np.linalg.det(B2R), 1.0)
    np.testing.assert_allclose(B2R @ [0, 0, 1], [0, 1, 0])  # Blender up (+Z) -> RUB up (+Y)
    np.testing.assert_allclose(B2R @ [0, -1, 0], [0, 0, 1])  # Blender front view looks down +Y; RUB's back is +Z
    np.testing.assert_allclose(_quat_matrix(Q_B2R), B2R, atol=1e-12)


def test_sh_rotation_band1_by_hand():
    # band 1 is C1 * (-y, z, -x); with rub = (x, z, -y): -y_b = z_r, z_b = y_r, -x_b = -x_r, so
    # c1*(-y_b) + c2*z_b + c3*(-x_b) = (-c2)*(-y_r) + c1*z_r + c3*(-x_r)
    np.testing.assert_allclose(sh_rotation(B2R, 1), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    D = sh_rotation(B2R, 3)
    np.testing.assert_allclose(D @ D.T, np.eye(15), atol=1e-10)  # orthogonal, bands unmixed
    assert not D[:3, 3:].any() and not D[3:8, 8:].any()


def test_rotation_keeps_every_view_of_every_splat():
    rng = np.random.default_rng(6)
    s = random_splats(300, 15, seed=6)
    r = rotate_splats(s, B2R, Q_B2R)
    d = rng.normal(size=(300, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    np.testing.assert_allclose(_sh_colour(r, d @ B2R.T), _sh_colour(s, d), atol=1e-5)
    np.testing.assert_allclose(r.means, s.means @ B2R.T, atol=1e-6)
    np.testing.assert_allclose(_quat_matrix(r.quats.astype(np.float64)),
                               B2R @ _quat_matrix(s.quats.astype(np.float64)), atol=1e-5)


def _spz_tolerances(s: Splats, r: Splats, bits: int):
    """Assert ``r`` is ``s`` after SPZ quantisation (Niantic's spec, version 3)."""
    assert np.abs(r.means - s.means).max() <= 0.5 / 2 ** bits + 1e-6 * (1 + np.abs(s.means).max())
    assert np.abs(r.scales - s.scales).max() <= 0.5 / 16 + 1e-6  # log scale in 1/16 steps
    assert np.abs(r.alpha() - s.alpha()).max() <= 0.5 / 255 + 1e-6
    assert np.abs(r.sh0 - s.sh0).max() <= 0.5 / (0.15 * 255) + 1e-6  # colour byte = sh0*0.15*255 + 127.5
    # smallest three: each stored component within delta = (1/sqrt2) * 0.5/511; the derived largest one
    # moves by |sum q_i e_i| / q_L <= delta * sqrt3 * sqrt(1 - q_L^2) / q_L <= 3 delta (q_L >= 1/2)
    delta = np.sqrt(0.5) * 0.5 / 511
    qs, qr = s.unit_quats(), r.unit_quats()
    qr = qr * np.sign((qs * qr).sum(1))[:, None]
    assert np.abs(qr - qs).max() <= 3 * delta + 1e-5
    # higher SH: 1/128 steps in RUB; turned back, a band's error is at most its RUB error's 2-norm
    for band in range(1, s.sh_degree + 1):
        sl = slice(band * band - 1, (band + 1) ** 2 - 1)
        assert np.abs(r.shN[:, sl] - s.shN[:, sl]).max() <= np.sqrt(2 * band + 1) * 0.5 / 128 + 1e-6


@pytest.mark.parametrize("k", [0, 3, 8, 15])
def test_spz_round_trip_within_quantisation(tmp_path, k):
    s = random_splats(700, k, seed=7)
    s.shN *= 0.6  # |band| <= 0.3 * sqrt(7) < 1: inside SPZ's SH range in any frame
    write_spz(s, tmp_path / "a.spz")
    h = spz_header(tmp_path / "a.spz")
    assert h == {"version": 3, "num_points": 700, "sh_degree": s.sh_degree, "fractional_bits": 12,
                 "flags": 0, "container": "gzip"}
    r = load_splats(tmp_path / "a.spz")
    assert len(r) == 700 and r.shN.shape == s.shN.shape
    _spz_tolerances(s, r, 12)


def test_spz_bytes_follow_the_spec_in_rub_axes(tmp_path):
    """Decode the written file by hand from Niantic's layout: 16-byte header, then positions as
    24-bit signed little-endian fixed point, alphas, colours, scales, rotations, SH."""
    s = random_splats(50, 3, seed=8)
    write_spz(s, tmp_path / "a.spz")
    raw = gzip.decompress((tmp_path / "a.spz").read_bytes())
    magic, version, n, degree, bits, flags, reserved = struct.unpack("<IIIBBBB", raw[:16])
    assert (magic, version, n, degree, bits, flags, reserved) == (0x5053474E, 3, 50, 1, 12, 0, 0)
    assert len(raw) == 16 + n * (9 + 1 + 3 + 3 + 4 + 9)
    b = np.frombuffer(raw, np.uint8, 9 * n, 16).reshape(n, 3, 3).astype(np.int64)
    fixed = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
    pos = np.where(fixed >= 1 << 23, fixed - (1 << 24), fixed) / 2.0 ** bits
    rub = np.stack([s.means[:, 0], s.means[:, 2], -s.means[:, 1]], 1)  # RUB = (x, z, -y) of Blender
    assert np.abs(pos - rub).max() <= 0.5 / 2 ** bits + 1e-6
    alphas = np.frombuffer(raw, np.uint8, n, 16 + 9 * n)
    assert np.abs(alphas / 255.0 - s.alpha()).max() <= 0.5 / 255 + 1e-6
    scales = np.frombuffer(raw, np.uint8, 3 * n, 16 + 13 * n).reshape(n, 3)
    assert np.abs(scales / 16.0 - 10.0 - s.scales).max() <= 0.5 / 16 + 1e-6  # the axes stay the Gaussian's own


def test_hand_made_spz_lands_upright_in_blender(tmp_path):
    """An SPZ assembled byte by byte from the spec (no gsply): a splat 1 m up (RUB +Y) and one
    1 m back (RUB +Z), rotated 90 degrees about RUB's y, read into the Blender world."""
    n, bits = 2, 10
    pos = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    fixed = (np.round(pos * 2 ** bits).astype(np.int64)) & 0xFFFFFF
    pos_bytes = np.stack([fixed & 255, (fixed >> 8) & 255, fixed >> 16], -1).astype(np.uint8)
    # quaternion (x, y, z, w) = (0, sin45, 0, cos45): largest is w (index 3), stored x, y, z as 9-bit magnitude + sign
    mag = lambda v: int(round(abs(v) / np.sqrt(0.5) * 511)) | ((v < 0) << 9)  # noqa: E731
    comp = 3
    for v in (0.0, np.sqrt(0.5), 0.0):
        comp = (comp << 10) | mag(v)
    rot = struct.pack("<I", comp) * n
    body = (struct.pack("<IIIBBBB", 0x5053474E, 3, n, 0, bits, 0, 0) + pos_bytes.tobytes()
            + bytes([255, 128]) + bytes([128, 128, 128] * n) + bytes([80, 80, 80] * n) + rot)
    (tmp_path / "h.spz").write_bytes(gzip.compress(body))
    r = read_spz(tmp_path / "h.spz")
    np.testing.assert_allclose(r.means, [[0, 0, 1], [0, -1, 0]], atol=1e-6)  # up -> +Z, back -> -Y
    np.testing.assert_allclose(np.exp(r.scales), np.exp(80 / 16 - 10), rtol=1e-6)
    np.testing.assert_allclose(r.alpha(), [1.0, 128 / 255], atol=1.1e-6)
    # the Gaussian's own axes (matrix columns) in RUB: x -> -z (front), y -> +y (up), z -> +x;
    # in Blender front is +Y and up is +Z: x -> +Y, y -> +Z, z -> +X
    want = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0.0]])
    np.testing.assert_allclose(_quat_matrix(r.quats.astype(np.float64)), [want, want], atol=2e-3)


def test_spz_written_by_gsply_from_a_ply_reads_into_the_same_world(tmp_path):
    """gsply's own PLY -> SPZ path copies coordinates unchanged (it assumes the PLY is already in
    SPZ's RUB axes). A PLY holding the scene in RUB, converted by gsply, reads back through
    load_splats into the Blender world, the same world our reader of the Blender-axes PLY gives."""
    import gsply
    s = random_splats(400, 8, seed=9)
    s.shN *= 0.6
    write_ply(s, tmp_path / "blender.ply")
    write_ply(rotate_splats(s, B2R, Q_B2R), tmp_path / "rub.ply")
    gsply.write_spz(tmp_path / "lib.spz", gsply.plyread(str(tmp_path / "rub.ply")))
    from_spz, from_ply = load_splats(tmp_path / "lib.spz"), load_splats(tmp_path / "blender.ply")
    # our PLY writer pads f_rest to degree 3, so the library wrote degree 3 with zero bands
    assert spz_header(tmp_path / "lib.spz")["sh_degree"] == 3
    assert np.abs(from_spz.shN[:, 8:]).max() == 0
    from_spz.shN, from_ply.shN = from_spz.shN[:, :8], from_ply.shN[:, :8]
    _spz_tolerances(from_ply, from_spz, 12)


def test_spz_far_scene_uses_fewer_fractional_bits(tmp_path):
    s = random_splats(100, 0, seed=10)
    s.means *= 2500.0  # up to ~ 9 km: 2^23 / 2^10 = 8192 m would not hold them all
    write_spz(s, tmp_path / "far.spz")
    bits = spz_header(tmp_path / "far.spz")["fractional_bits"]
    extent = np.abs(s.means).max()
    assert extent * 2 ** bits <= 2 ** 23 - 1 < extent * 2 ** (bits + 1)
    _spz_tolerances(s, read_spz(tmp_path / "far.spz"), bits)


def test_spz_bad_inputs_are_one_line_errors(tmp_path, monkeypatch):
    (tmp_path / "junk.spz").write_bytes(b"hello world, not a splat file")
    with pytest.raises(SplatFormatError, match="junk.spz.*not an SPZ file"):
        load_splats(tmp_path / "junk.spz")
    (tmp_path / "v1.spz").write_bytes(gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 1, 1, 0, 12, 0, 0) + b"\0" * 20))
    with pytest.raises(SplatFormatError, match="v1.spz.*version 1"):
        load_splats(tmp_path / "v1.spz")
    (tmp_path / "short.spz").write_bytes(gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 3, 1000, 0, 12, 0, 0)))
    with pytest.raises(SplatFormatError, match="short.spz"):
        load_splats(tmp_path / "short.spz")
    with pytest.raises(SplatFormatError, match="gone.spz: no such file"):
        load_splats(tmp_path / "gone.spz")
    write_spz(random_splats(5, 0), tmp_path / "ok.spz")
    monkeypatch.setitem(__import__("sys").modules, "gsply", None)
    with pytest.raises(SplatFormatError, match=r"ok.spz: .spz needs the gsply package") as e:
        load_splats(tmp_path / "ok.spz")
    assert "\n" not in str(e.value)


_BPY_GLTF = """
import sys, json, bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
assert bpy.ops.import_scene.gltf(filepath=sys.argv[1]) == {'FINISHED'}
print('JSON' + json.dumps({o.name: list(o.matrix_world.translation) for o in bpy.context.scene.objects}))
"""


def test_rub_axes_land_where_blenders_gltf_importer_puts_y_up_files(tmp_path):
    """glTF shares SPZ's right-handed Y-up axes; Blender's own glTF importer (bpy, subprocess)
    places points 1 m along x, y (up) and z where read_spz's conversion does."""
    import json
    import subprocess
    import sys

    pts = {"px": [1.0, 0.0, 0.0], "py": [0.0, 1.0, 0.0], "pz": [0.0, 0.0, 1.0], "pq": [0.3, -2.0, 0.7]}
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": list(range(len(pts)))}],
           "nodes": [{"name": k, "translation": v} for k, v in pts.items()]}
    (tmp_path / "axes.gltf").write_text(json.dumps(doc))
    proc = subprocess.run([sys.executable, "-c", _BPY_GLTF, str(tmp_path / "axes.gltf")],
                          capture_output=True, text=True, timeout=300)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")]
    assert proc.returncode == 0 and line, proc.stderr[-2000:]
    got = json.loads(line[0][4:])
    for name, p in pts.items():
        np.testing.assert_allclose(got[name], B2R.T @ np.array(p), atol=1e-6, err_msg=name)
