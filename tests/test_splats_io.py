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
