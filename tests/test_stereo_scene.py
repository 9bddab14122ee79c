"""Scene stereo: right-eye cameras (offset + sensor-shift convergence) and splat renders of them."""
from __future__ import annotations

import numpy as np
import pytest

from backend.pipelines.stereo.scene import right_eye_cameras


def look_at_blender(centre, target):
    """Blender camera-to-world looking from ``centre`` at ``target`` (camera -Z forward, +Y up, world +Z up)."""
    centre, target = np.asarray(centre, float), np.asarray(target, float)
    back = centre - target
    back /= np.linalg.norm(back)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, back, centre
    return m


def project(mw, f, pp, X):
    """Pixel (x right, y down, centres at +0.5) and planar depth of world point X for a Blender camera."""
    cam = np.linalg.inv(mw) @ np.append(X, 1.0)
    z = -cam[2]
    return np.array([pp[0] + f * cam[0] / z, pp[1] - f * cam[1] / z]), z


@pytest.mark.parametrize("convergence", [None, 2.5])
def test_right_camera_gives_f_b_disparity_with_convergence(convergence):
    f, pp, b = 800.0, np.array([320.0, 240.0]), 0.065
    mw = look_at_blender([1.0, -3.0, 1.6], [0.2, 0.5, 0.3])
    mw_r, pp_r = right_eye_cameras(mw, f, pp, b, convergence)
    rng = np.random.default_rng(0)
    for _ in range(20):
        X = np.array([0.2, 0.5, 0.3]) + rng.uniform(-1, 1, 3)
        xl, zl = project(mw, f, pp, X)
        xr, zr = project(mw_r[0], f, pp_r[0], X)
        assert zr == pytest.approx(zl)  # parallel cameras: same planar depth
        assert xr[1] == pytest.approx(xl[1], abs=1e-9)  # rectified: same row
        shift = 0.0 if convergence is None else 1.0 / convergence
        assert xl[0] - xr[0] == pytest.approx(f * b * (1.0 / zl - shift), abs=1e-9)
    # the right camera sits interaxial metres to the right, looking the same way
    np.testing.assert_allclose(mw_r[0, :3, 3] - mw[:3, 3], b * mw[:3, 0], atol=1e-12)
    np.testing.assert_allclose(mw_r[0, :3, :3], mw[:3, :3])


def test_splat_renders_of_both_eyes_have_the_true_disparity():
    pytest.importorskip("torch")
    from backend.pipelines.splats_io import SH_C0, Splats
    from backend.pipelines.stereo.scene import render_pair

    w, h, f, b, zc = 96, 64, 60.0, 0.2, 3.0
    mw = np.eye(4)  # at the origin looking down -Z
    depths = np.array([1.5, 2.5, 4.0])
    xs = np.array([-0.4, 0.1, 0.9])
    means = np.stack([xs * depths / 2.5, np.zeros(3), -depths], axis=1)
    n = len(means)
    splats = Splats(means=means, scales=np.full((n, 3), np.log(0.05)), quats=np.tile([1.0, 0, 0, 0], (n, 1)),
                    opacities=np.full(n, 6.0), sh0=np.full((n, 3), (1.0 - 0.5) / SH_C0))
    left, right = render_pair(splats, [mw], [f], [[w / 2, h / 2]], w, h, (w, h), b, zc)
    for eye in (left, right):
        assert eye["rgb"].shape == (1, h, w, 3)

    def centroids(alpha):
        a = alpha[0]
        out = []
        cols = np.arange(w) + 0.5
        labels = np.zeros(w, int)
        mass = a.sum(0)
        on = mass > 1e-3
        k = 0
        for x in range(w):
            if on[x] and (x == 0 or not on[x - 1]):
                k += 1
            labels[x] = k if on[x] else 0
        for j in range(1, k + 1):
            m = labels == j
            out.append(float((cols[m] * mass[m]).sum() / mass[m].sum()))
        return np.array(out)

    cl, cr = centroids(left["alpha"]), centroids(right["alpha"])
    assert len(cl) == len(cr) == 3
    expected = f * b * (1.0 / depths - 1.0 / zc)
    # blob centres are projections of the means; their alpha-weighted centroids agree to a
    # small fraction of a pixel (the footprints are symmetric, sigma ~ 1-2 px)
    np.testing.assert_allclose(cl - cr, expected, atol=0.05)
    # splat depth is the planar depth of the blobs at their centres
    for x, z in zip(cl, depths):
        assert left["depth"][0, h // 2, int(x)] == pytest.approx(z, rel=0.02)


def _scene_fixture(tmp_path, frames=3, w=96, h=64, f=70.0):
    """Splats (a textured wall at 4 m and three blobs in front), a sideways camera path, footage = left renders."""
    from shared_protocol import camera_file

    from backend.media.encode import write_video
    from backend.pipelines.splats_io import SH_C0, Splats, write_ply
    from backend.pipelines.stereo.scene import render_pair

    rng = np.random.default_rng(0)
    gx, gy = np.meshgrid(np.linspace(-4, 4, 64), np.linspace(-2.5, 2.5, 40))
    wall = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, -4.0)], axis=1)
    blobs = np.array([[-0.5, 0.2, -1.8], [0.4, -0.3, -2.4], [0.9, 0.4, -1.5]])
    means = np.concatenate([wall, blobs])
    n = len(means)
    scales = np.concatenate([np.full((len(wall), 3), np.log(0.08)), np.full((3, 3), np.log(0.12))])
    colours = rng.uniform(0.1, 0.9, (n, 3))
    splats = Splats(means=means, scales=scales, quats=np.tile([1.0, 0, 0, 0], (n, 1)), opacities=np.full(n, 5.0),
                    sh0=(colours - 0.5) / SH_C0)
    recon = tmp_path / "recon"
    recon.mkdir()
    write_ply(splats, recon / "splats.ply")
    mws = []
    for i in range(frames):
        m = np.eye(4)
        m[0, 3] = 0.05 * i
        mws.append(m)
    doc = camera_file.make_document(w, h, 10.0, mws, f, [w / 2, h / 2])
    camera_file.write(recon / "cameras.json", doc)
    left, right = render_pair(splats, mws, [f] * frames, [[w / 2, h / 2]] * frames, w, h, (w, h), 0.1, 3.0)
    u8 = lambda a: np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)  # noqa: E731
    video = write_video(tmp_path / "footage.mp4", [u8(x) for x in left["rgb"]], 10, crf=0)
    return recon, video, [u8(x) for x in right["rgb"]]


def test_scene_stereo_job_renders_the_right_eye(tmp_path):
    pytest.importorskip("torch")
    import imageio_ffmpeg

    from backend.evaluation.image_metrics import psnr
    from backend.jobs import stereo as job
    from backend.progress import Progress

    recon, video, truth = _scene_fixture(tmp_path)
    res = job.run({"input": str(video), "reconstruction": str(recon), "method": "auto", "interaxial": 0.1,
                   "convergence": 3.0, "layout": "sbs", "crf": 0}, tmp_path / "out", Progress())
    assert res.summary["method"] == "scene" and res.summary["frames"] == 3
    assert res.summary["frames_without_camera"] == 0
    gen = imageio_ffmpeg.read_frames(str(tmp_path / "out" / "stereo.mp4"))
    next(gen)
    frames = [np.frombuffer(b, np.uint8).reshape(64, 192, 3) for b in gen]
    luma = lambda a: a.astype(float) @ [0.299, 0.587, 0.114]  # noqa: E731
    for fr, gt in zip(frames, truth):
        # the right half is the splat render of the right camera (H.264 at crf 0 in yuv420p)
        assert psnr(luma(fr[:, 96:]), luma(gt)) > 35
        assert psnr(luma(fr[:, 96:]), luma(fr[:, :96])) < psnr(luma(fr[:, 96:]), luma(gt)) - 5


def test_warp_method_uses_splat_depth_of_a_reconstruction(tmp_path):
    pytest.importorskip("torch")
    import imageio_ffmpeg

    from backend.evaluation.image_metrics import psnr
    from backend.jobs import stereo as job
    from backend.progress import Progress

    recon, video, truth = _scene_fixture(tmp_path)
    res = job.run({"input": str(video), "reconstruction": str(recon), "method": "warp", "interaxial": 0.1,
                   "convergence": 3.0, "layout": "sbs", "crf": 0, "temporal_radius": 0}, tmp_path / "out",
                  Progress())
    assert res.summary["method"] == "warp" and res.summary["depth"] == "splats"
    # wall at 4 m and blobs at 1.5..2.4 m with f = 70 px, B = 0.1 m, Z_c = 3 m
    lo, hi = res.summary["disparity_px"]
    assert lo == pytest.approx(70 * 0.1 * (1 / 4 - 1 / 3), abs=0.3) and hi <= 70 * 0.1 * (1 / 1.5 - 1 / 3) + 0.3
    gen = imageio_ffmpeg.read_frames(str(tmp_path / "out" / "stereo.mp4"))
    next(gen)
    luma = lambda a: a.astype(float) @ [0.299, 0.587, 0.114]  # noqa: E731
    for b, gt in zip(gen, truth):
        fr = np.frombuffer(b, np.uint8).reshape(64, 192, 3)
        inner = np.s_[4:-4, 4:-12]  # away from the frame border the warp cannot see past
        assert psnr(luma(fr[:, 96:])[inner], luma(gt)[inner]) > 30


def test_scene_default_convergence_is_median_splat_depth(tmp_path):
    pytest.importorskip("torch")
    from backend.jobs import stereo as job
    from backend.progress import Progress

    recon, video, _ = _scene_fixture(tmp_path, frames=1)
    res = job.run({"input": str(video), "reconstruction": str(recon), "method": "scene", "interaxial": 0.1},
                  tmp_path / "out", Progress())
    # the wall at 4 m fills most of the view: its depth is the median
    assert res.summary["convergence"] == pytest.approx(4.0, rel=0.02)
