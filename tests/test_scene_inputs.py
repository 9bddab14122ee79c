"""The scene's input checks and its geometric helpers on cases with a known answer."""
from __future__ import annotations

import numpy as np
import pytest

from backend.progress import JobError


def _save(path, arr, **kw):
    from PIL import Image

    Image.fromarray(arr).save(path, **kw)
    return path


def _rgb(h=40, w=60):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_not_an_image_and_too_small_fail_naming_the_file(tmp_path):
    from backend.pipelines.scene.images import read_photo

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(JobError, match="not a readable image: .*notes.png") as e:
        read_photo(text)
    assert e.value.code == "bad_input" and "\n" not in e.value.message
    with pytest.raises(JobError, match=r"tiny.png is 1x1") as e:
        read_photo(_save(tmp_path / "tiny.png", np.zeros((1, 1, 3), np.uint8)))
    assert e.value.code == "bad_input"
    with pytest.raises(JobError, match="image not found"):
        read_photo(tmp_path / "nothing.jpg")


def test_grayscale_16bit_alpha_become_8bit_rgb_with_a_note(tmp_path):
    from backend.pipelines.scene.images import read_photo

    g = np.tile(np.linspace(0, 255, 60).astype(np.uint8), (40, 1))
    p = read_photo(_save(tmp_path / "gray.png", g))
    assert p.rgb.shape == (40, 60, 3) and (p.rgb[..., 0] == g).all() and "grayscale" in p.notes[0]
    g16 = (g.astype(np.uint16) * 257)
    p = read_photo(_save(tmp_path / "gray16.png", g16))
    assert p.rgb.dtype == np.uint8 and np.abs(p.rgb[..., 1].astype(int) - g).max() <= 1
    assert "16-bit" in p.notes[0]
    import cv2

    rgb16 = (_rgb().astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])
    p = read_photo(tmp_path / "rgb16.png")
    assert np.abs(p.rgb.astype(int) - _rgb()).max() <= 1
    rgba = np.concatenate([_rgb(), np.full((40, 60, 1), 7, np.uint8)], 2)
    p = read_photo(_save(tmp_path / "rgba.png", rgba))
    assert (p.rgb == _rgb()).all() and "alpha" in p.notes[0]


def test_exif_rotation_is_applied(tmp_path):
    from PIL import Image

    from backend.pipelines.scene.images import read_photo

    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :10] = 255  # a white band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: displayed turned 90 deg clockwise
    path = tmp_path / "phone.png"
    Image.fromarray(img).save(path, exif=exif)
    p = read_photo(path)
    assert p.rgb.shape == (60, 40, 3)
    assert p.rgb[:10].mean() > 200 and p.rgb[20:].mean() < 5  # the band is now on top
    assert "orientation 6" in p.notes[0]


def test_huge_photo_is_downscaled_with_a_note(tmp_path):
    from backend.pipelines.scene.images import read_photo

    p = read_photo(_save(tmp_path / "big.png", np.zeros((300, 500, 3), np.uint8)), max_size=100)
    assert p.rgb.shape == (60, 100, 3) and "500x300 downscaled to 100x60" in p.notes[0]


def test_photo_sets_of_different_cameras_or_too_many_fail(tmp_path):
    from backend.pipelines.scene.images import read_photos

    a = _save(tmp_path / "a.png", _rgb(40, 60))
    b = _save(tmp_path / "b.png", _rgb(60, 40))
    with pytest.raises(JobError, match="aspect"):
        read_photos([a, b])
    with pytest.raises(JobError, match="1 to 8 images"):
        read_photos([a] * 9)


def test_job_params_are_checked(tmp_path):
    from backend.jobs.scene import options_from_params

    photo = _save(tmp_path / "a.png", _rgb())
    with pytest.raises(JobError, match="images must be"):
        options_from_params({"images": []})
    with pytest.raises(JobError, match="image not found"):
        options_from_params({"images": [str(tmp_path / "x.png")]})
    with pytest.raises(JobError, match="strength must be"):
        options_from_params({"images": [str(photo)], "strength": 2})
    with pytest.raises(JobError, match="weights folder not found"):
        options_from_params({"images": [str(photo)], "weights": str(tmp_path / "none")})
    images, opts, *_ = options_from_params({"images": [str(photo)], "views": 3, "device": "cpu"})
    assert images == [str(photo)] and opts.views == 3 and opts.refine.device == "cpu"


def test_far_depth_is_the_95th_percentile_times_1_2():
    from backend.pipelines.scene.lift import far_filled

    d = np.linspace(1.0, 100.0, 10000).reshape(100, 100).astype(np.float32)
    d[0, :50] = np.nan  # sky: no depth
    d[1, :50] = np.inf
    out, far = far_filled(d)
    valid = d[np.isfinite(d)]
    assert far == pytest.approx(np.percentile(valid, 95) * 1.2, rel=1e-6)
    assert (out[0, :50] == np.float32(far)).all() and (out[1, :50] == np.float32(far)).all()
    assert out.max() == pytest.approx(far, rel=1e-6)
    np.testing.assert_array_equal(out[50], d[50])


def test_depth_alignment_recovers_scale_and_shift_of_inverse_depth():
    from backend.pipelines.scene.lift import align_depth

    rng = np.random.default_rng(0)
    ref = rng.uniform(1.0, 8.0, (60, 80))
    inv_new = (1.0 / ref - 0.02) / 0.7  # 1/ref = 0.7 / new + 0.02
    new = 1.0 / inv_new
    overlap = np.ones_like(ref, bool)
    overlap[:, 60:] = False  # the part to be aligned is not used for the fit
    bad = rng.random(ref.shape) < 0.05
    ref_seen = np.where(bad, ref * 3.0, ref)  # outliers (a wrong surface) on the overlap
    aligned, a, b = align_depth(new, ref_seen, overlap)
    assert a == pytest.approx(0.7, rel=1e-6) and b == pytest.approx(0.02, abs=1e-8)
    np.testing.assert_allclose(aligned[:, 60:], ref[:, 60:], rtol=1e-5)


def test_lifted_pixels_project_back_to_their_pixels():
    from backend.pipelines.render import cameras_from_arrays
    from backend.pipelines.scene.lift import lift
    from backend.pipelines.scene.models import View
    from backend.pipelines.scene.trajectory import look_at_y_up

    view = View(look_at_y_up((0.3, 0.2, 1.0), (0.0, 0.0, -2.0)), 50.0, 40, 30)
    depth = np.random.default_rng(0).uniform(1.0, 3.0, (30, 40))
    s = lift(np.zeros((30, 40, 3), np.uint8), depth, view)
    cams = cameras_from_arrays([view.c2w], view.focal, (20.0, 15.0), 40, 30)
    p = s.means.astype(np.float64) @ cams.viewmats[0][:3, :3].T + cams.viewmats[0][:3, 3]
    uv = p[:, :2] / p[:, 2:] * 50.0 + [20.0, 15.0]
    gy, gx = np.mgrid[0:30, 0:40]
    np.testing.assert_allclose(uv, np.stack([gx.ravel() + 0.5, gy.ravel() + 0.5], 1), atol=1e-3)
    np.testing.assert_allclose(p[:, 2], depth.ravel(), rtol=1e-5)


def test_inpaint_mask_grows_holes_and_takes_a_band_on_depth_edges():
    from backend.pipelines.scene.lift import inpaint_mask

    alpha = np.ones((40, 40))
    alpha[5:10, 5:10] = 0.0
    depth = np.full((40, 40), 2.0)
    depth[:, 30:] = 5.0  # a depth edge between columns 29 and 30
    m = inpaint_mask(alpha, depth, margin=2)
    assert m[3:12, 3:12].all() and not m[2, 7] and not m[7, 12]
    assert m[20, 27:33].all() and not m[20, 26] and not m[20, 33]
    assert not m[20, 15]


def test_spiral_starts_at_the_photo_and_looks_at_its_median_depth():
    from backend.pipelines.scene.trajectory import spiral, through

    cams = spiral(np.linspace(0, 1, 9), radius=0.3, forward=0.5, target_depth=4.0)
    np.testing.assert_allclose(cams[0], np.eye(4), atol=1e-12)
    for m in cams:
        to_target = np.array([0, 0, -4.0]) - m[:3, 3]
        np.testing.assert_allclose(-m[:3, 2], to_target / np.linalg.norm(to_target), atol=1e-12)
    np.testing.assert_allclose(cams[-1][:3, 3], [0.3, 0.0, -0.5], atol=1e-12)
    mid = through(cams[[0, 8]], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(mid[[0, 2]], cams[[0, 8]], atol=1e-12)
    np.testing.assert_allclose(mid[1][:3, 3], 0.5 * (cams[0][:3, 3] + cams[8][:3, 3]), atol=1e-12)
