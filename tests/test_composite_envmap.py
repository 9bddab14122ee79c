"""Environment map: cube faces -> equirectangular in Blender's convention, checked by
Blender itself; exposure and rotation controls; rendering from splats."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from backend.pipelines.composite import envmap
from backend.pipelines.render.writers import write_exr

sys.path.insert(0, str(Path(__file__).resolve().parent / "blender_scripts"))
from bpy_subprocess import read_json, run_script  # noqa: E402


def colour(d: np.ndarray) -> np.ndarray:
    """A smooth, direction-revealing colour (linear RGB in [0.1, 0.9])."""
    return 0.5 + 0.4 * d


def test_equirect_directions_are_unit_and_cover_the_sphere():
    d = envmap.equirect_directions(64, 32)
    np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-12)
    assert d[0, :, 2].min() > 0.99 and d[-1, :, 2].max() < -0.99  # top row up, bottom row down
    np.testing.assert_allclose(d[16, 32], [1, 0, 0], atol=0.1)  # centre column faces +X


def test_cube_to_equirect_reproduces_a_directional_field():
    """Faces painted with colour(direction of each pixel centre) resample to colour(direction)
    of each equirect pixel; bilinear error on a linear field is only the face-edge clamp."""
    s = 64
    mats = envmap.face_matrices(np.zeros(3))
    faces = np.zeros((6, s, s, 4))
    c = (np.arange(s) + 0.5) / s * 2 - 1
    x, y = np.meshgrid(c, c)
    for k, m in enumerate(mats):
        d_cam = np.stack([x, -y, -np.ones_like(x)], -1)  # OpenCV pixel ray in Blender camera axes
        d = d_cam @ m[:3, :3].T
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        faces[k, ..., :3] = colour(d)
        faces[k, ..., 3] = 1.0
    eq = envmap.cube_to_equirect(faces, mats, 48)
    want = colour(envmap.equirect_directions(96, 48))
    assert np.abs(eq[..., :3] - want).max() < 0.4 * 2 / s * 2  # <= two face pixels of colour slope


def test_blender_reads_the_map_in_the_same_convention(tmp_path):
    eq = colour(envmap.equirect_directions(256, 128)).astype(np.float32)
    write_exr(tmp_path / "env.exr", {"R": eq[..., 0], "G": eq[..., 1], "B": eq[..., 2]})
    run_script("composite_envmap.py", tmp_path / "env.exr", tmp_path / "out.json", tmp_path, user_dir=tmp_path / "u")
    report = read_json(tmp_path / "out.json")
    # a 200 mm lens sees +-5 degrees; the centre pixel is the forward direction, and one map
    # pixel (1.4 degrees) of colour slope 0.4 per radian bounds the interpolation error
    tol = 0.02
    assert len(report) == 8
    for case in report:
        rgb, f = np.asarray(case["rgb"]), np.asarray(case["forward"])
        if case["rotation"] == 90.0:  # the map turned 90 degrees: +Y now shows what +X showed
            assert case["face"] == "+y"
            np.testing.assert_allclose(rgb, colour(np.array([1.0, 0, 0])), atol=tol)
        elif case["exposure"] == 1.0:
            np.testing.assert_allclose(rgb, 2.0 * colour(f), atol=2 * tol)
        else:
            np.testing.assert_allclose(rgb, colour(f), atol=tol, err_msg=case["face"])


def test_uncovered_directions_take_the_solid_angle_weighted_mean_colour():
    rgba = np.zeros((4, 8, 4), np.float32)
    rgba[0, :, :3], rgba[1, :, :3] = [1.0, 0, 0], [0, 0, 1.0]  # red polar row, blue row near the equator
    rgba[:2, :, 3] = 1.0
    out = envmap.fill_uncovered(rgba)
    w0, w1 = np.sin(np.pi / 8), np.sin(3 * np.pi / 8)  # row centres at 22.5 and 67.5 degrees from the pole
    np.testing.assert_allclose(out[3, 0], [w0, 0, w1] / (w0 + w1), atol=1e-6)
    np.testing.assert_allclose(out[0, 0], [1.0, 0, 0], atol=1e-6)  # covered pixels keep their colour


def test_environment_map_from_splats_sees_each_blob_in_its_direction(tmp_path):
    """Three coloured Gaussian blobs 2 m from the map's centre (red towards +X, green towards
    -Y, blue overhead): the render service's cube faces, resampled, show each colour in its
    direction and the mean covered colour where nothing is."""
    from backend.pipelines.splats_io import SH_C0, Splats, save_splats
    from backend.synthetic.exr import read_exr_channels

    centre = np.array([0.3, -0.2, 0.5])
    offsets = np.array([[2.0, 0, 0], [0, -2.0, 0], [0, 0, 2.0]])
    colours = np.eye(3)
    splats = Splats(means=centre + offsets, scales=np.full((3, 3), np.log(0.4)), quats=np.tile([1.0, 0, 0, 0], (3, 1)),
                    opacities=np.full(3, 6.0), sh0=(colours - 0.5) / SH_C0)
    save_splats(splats, tmp_path / "blobs.ply")
    envmap.render_envmap(tmp_path / "blobs.ply", centre, tmp_path / "env.exr", face=48)
    ch = read_exr_channels(tmp_path / "env.exr")
    img = np.stack([ch["R"], ch["G"], ch["B"]], -1)
    h, w = img.shape[:2]
    assert (h, w) == (48, 96)
    dirs = envmap.equirect_directions(w, h)
    for off, col in zip(offsets, colours):
        k = np.argmax(dirs.reshape(-1, 3) @ (off / 2.0))  # the map pixel nearest the blob's direction
        rgb = img.reshape(-1, 3)[k]
        assert np.argmax(rgb) == np.argmax(col) and rgb.max() > 0.8, (off, rgb)
    # away from every blob (straight down): the solid-angle weighted mean of the three equal
    # blobs, grey (each covers the same solid angle; only the cube-face resampling differs)
    down = img[-1].mean(0)
    np.testing.assert_allclose(down, down.mean(), atol=0.05)
    assert 0.15 < down.mean() < 0.5
