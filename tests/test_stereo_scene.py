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
    from backend.jobs import stereo as job
    from backend.progress import Progress

    recon, video, _ = _scene_fixture(tmp_path, frames=1)
    res = job.run({"input": str(video), "reconstruction": str(recon), "method": "scene", "interaxial": 0.1},
                  tmp_path / "out", Progress())
    # the wall at 4 m fills most of the view: its depth is the median
    assert res.summary["convergence"] == pytest.approx(4.0, rel=0.02)


def test_scene_stereo_job_torch_compose_matches_numpy_compose(tmp_path):
    """The device path (forced on the CPU) writes the same right eyes as the numpy path, within
    the H.264 round trip and the subsampled colour fit (1 level before encoding)."""
    import imageio_ffmpeg

    from backend.evaluation.image_metrics import psnr
    from backend.jobs import stereo as job
    from backend.progress import Progress

    recon, video, truth = _scene_fixture(tmp_path, frames=10)
    outs = {}
    for mode in ("numpy", "torch"):
        res = job.run({"input": str(video), "reconstruction": str(recon), "method": "scene", "interaxial": 0.1,
                       "device": "cpu", "scene_compose": mode, "layout": "sbs", "crf": 0}, tmp_path / mode,
                      Progress())
        assert res.summary["compose"] == mode and res.summary["frames"] == 10
        gen = imageio_ffmpeg.read_frames(str(tmp_path / mode / "stereo.mp4"))
        next(gen)
        outs[mode] = [np.frombuffer(b, np.uint8).reshape(64, 192, 3)[:, 96:] for b in gen]
        # default convergence (median splat depth of the first frame) is the same in both paths
        outs[mode + "_conv"] = res.summary["convergence"]
    assert outs["torch_conv"] == pytest.approx(outs["numpy_conv"], rel=1e-6)
    assert len(outs["torch"]) == len(outs["numpy"]) == 10  # a batch of 8 and one of 2
    for a, b in zip(outs["torch"], outs["numpy"]):
        assert psnr(a.astype(float), b.astype(float)) > 45


def test_scene_stereo_job_torch_compose_debug_grid(tmp_path):
    """The device path's debug grid shows the same disparity and non-opaque mask as the numpy path's."""
    import imageio_ffmpeg

    from backend.jobs import stereo as job
    from backend.progress import Progress

    recon, video, _ = _scene_fixture(tmp_path, frames=1)
    grids = []
    for mode in ("numpy", "torch"):
        job.run({"input": str(video), "reconstruction": str(recon), "method": "scene", "interaxial": 0.1,
                 "convergence": 3.0, "device": "cpu", "scene_compose": mode, "debug_grid": True, "crf": 0},
                tmp_path / mode, Progress())
        gen = imageio_ffmpeg.read_frames(str(tmp_path / mode / "stereo.mp4"))
        meta = next(gen)
        w, h = meta["size"]
        grids.append(np.frombuffer(next(gen), np.uint8).reshape(h, w, 3).astype(int))
    assert np.abs(grids[0] - grids[1]).mean() < 1.0


def _layered_splats(opacity_strip: float | None):
    """A textured wall at 4 m (80x60 splats) and a sharp-edged panel at 1.6 m in front of it; with
    ``opacity_strip`` the wall splats with x in (-0.6, 0.4) m get that (pre-sigmoid) opacity."""
    from backend.pipelines.splats_io import SH_C0, Splats

    rng = np.random.default_rng(0)
    gx, gy = np.meshgrid(np.linspace(-4, 4, 80), np.linspace(-3, 3, 60))
    wall = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, -4.0)], axis=1)
    px, py = np.meshgrid(np.arange(-0.7, -0.1, 0.025), np.arange(-0.3, 0.3, 0.025))
    panel = np.stack([px.ravel(), py.ravel(), np.full(px.size, -1.6)], axis=1)
    means = np.concatenate([wall, panel])
    n = len(means)
    scales = np.concatenate([np.full((len(wall), 3), np.log(0.07)), np.full((len(panel), 3), np.log(0.02))])
    opac = np.full(n, 5.0)
    if opacity_strip is not None:
        opac[:len(wall)][(gx.ravel() > -0.6) & (gx.ravel() < 0.4)] = opacity_strip
    return Splats(means=means, scales=scales, quats=np.tile([1.0, 0, 0, 0], (n, 1)), opacities=opac,
                  sh0=(rng.uniform(0.1, 0.9, (n, 3)) - 0.5) / SH_C0)


def _check_torch_compose_against_numpy(device: str):
    """Footage is a known colour affine of the renders of the complete scene; the composer's splats
    have a translucent strip of wall beside the panel's disocclusion, so the colour fit, the
    blend, the warp and its hole fill all enter. The device path (``compose_right_torch``, and
    ``DeviceStereo`` as the job runs it) against the numpy ``compose_right`` on the same renders."""
    import torch

    from backend.evaluation.image_metrics import psnr
    from backend.pipelines.stereo.scene import (DeviceStereo, compose_right, compose_right_torch, render_pair,
                                                render_pair_device)
    from backend.pipelines.stereo.warp import warp_right

    w, h, f, b, zc = 128, 96, 90.0, 0.25, 3.0
    mws = [np.eye(4), np.eye(4)]
    mws[1][0, 3] = 0.04
    args = ([f, f], [[w / 2, h / 2]] * 2, w, h, (w, h), b, zc)
    full_l, full_r = render_pair(_layered_splats(None), mws, *args, device=device)
    affine = lambda x: np.clip(np.rint(0.8 * 255 * x + 20), 0, 255).astype(np.uint8)  # noqa: E731
    part = _layered_splats(-1.0)
    left, right = render_pair(part, mws, *args, device=device)
    left_d, right_d = render_pair_device(part, mws, *args, device=device)
    for k in ("rgb", "alpha", "depth"):  # the device variant renders the same maps (other camera batches)
        np.testing.assert_allclose(left_d[k].cpu().numpy(), left[k], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(right_d[k].cpu().numpy(), right[k], rtol=1e-6, atol=1e-6)
    footage = np.stack([affine(x) for x in full_l["rgb"]])
    eyes, disp, hole = compose_right_torch(torch.from_numpy(footage).to(device), left_d, right_d, [f, f], b, zc,
                                           generator=torch.Generator(device=device).manual_seed(0))
    job_eyes = DeviceStereo(part, w, h, (w, h), b, device).right_eyes(list(footage), mws, [f, f], args[1], zc)
    for i in range(2):
        eye_np, disp_np, hole_np = compose_right(footage[i], left, right, i, f, b, zc)
        eye = eyes[i].cpu().numpy()
        np.testing.assert_array_equal(job_eyes[i], eye)
        np.testing.assert_array_equal(hole[i].cpu().numpy(), hole_np)
        np.testing.assert_allclose(disp[i].cpu().numpy(), disp_np, rtol=1e-6)
        assert 0.05 < hole_np.mean() < 0.5  # the translucent strip is a real share of the frame
        warp_holes = warp_right(footage[i].astype(np.float32), disp_np).hole
        assert (warp_holes & hole_np).sum() >= 10  # the fills differ there
        diff = np.abs(eye.astype(int) - eye_np.astype(int))
        # opaque: the affine (gain 0.8, offset 20) is exact up to footage rounding (+-0.5 level),
        # so both fits recover it to well under a level; rounding may then differ by one
        assert diff[~hole_np].max() <= 1
        # translucent: the warped footage enters with weight (1 - alpha); the fills differ only in holes
        assert diff[hole_np].mean() < 0.5
        truth = affine(full_r["rgb"][i])
        assert psnr(eye, truth, mask=hole_np) > psnr(eye_np, truth, mask=hole_np) - 0.2
        assert psnr(eye, truth) > psnr(right["rgb"][i] * 255, truth) + 3  # the composite beats the raw render


def test_torch_compose_matches_numpy_compose():
    _check_torch_compose_against_numpy("cpu")


@pytest.mark.gpu
def test_cuda_compose_matches_numpy_compose():
    import torch
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    _check_torch_compose_against_numpy("cuda")


def test_torch_colour_fit_recovers_a_known_affine_despite_outliers():
    import torch
    from backend.pipelines.stereo.colour import apply_affine_torch, fit_affine, fit_affine_torch

    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, (3, 60, 80, 3))
    gain = np.array([[0.8, 1.1, 0.95], [1.2, 0.7, 1.0], [1.0, 1.0, 1.0]])
    offset = np.array([[20.0, -5.0, 3.0], [-10.0, 30.0, 0.0], [0.0, 0.0, 0.0]])
    ref = src * gain[:, None, None] + offset[:, None, None] + rng.normal(0, 0.5, src.shape)
    out = rng.random(src.shape[:3]) < 0.1  # 10% of the pixels show something else
    ref[out] = rng.uniform(0, 255, (out.sum(), 3))
    mask = np.ones(src.shape[:3], bool)
    mask[:, :, :20] = False
    mask[2] = False
    mask[2, :5, :10] = True  # 50 pixels: too few, the identity
    s, r, m = (torch.from_numpy(a) for a in (src.astype(np.float32), ref.astype(np.float32), mask))
    cf = fit_affine_torch(s, r, m, samples=4096, generator=torch.Generator().manual_seed(0)).numpy()
    # noise 0.5 over ~3000 inliers spread over 0..200: gain error ~ 0.5 / (58 * sqrt(3000)) ~ 2e-4
    np.testing.assert_allclose(cf[:2, :, 0], gain[:2], atol=2e-3)
    np.testing.assert_allclose(cf[:2, :, 1], offset[:2], atol=0.3)
    np.testing.assert_array_equal(cf[2], [[1.0, 0.0]] * 3)
    ref_fit = fit_affine(src[0], ref[0], mask[0])  # the numpy fit on every mask pixel
    np.testing.assert_allclose(cf[0, :, 0], ref_fit[:, 0], atol=2e-3)
    np.testing.assert_allclose(cf[0, :, 1], ref_fit[:, 1], atol=0.3)
    # with no fewer samples than pixels the fit uses every pixel: the numpy fit's data exactly
    # (float32 inputs; the robust threshold uses the lower median, numpy the mid-point)
    every = fit_affine_torch(s[0], r[0], m[0], samples=s[0, ..., 0].numel()).numpy()
    np.testing.assert_allclose(every[:, 0], ref_fit[:, 0], atol=1e-4)
    np.testing.assert_allclose(every[:, 1], ref_fit[:, 1], atol=1e-2)
    # one image (H, W, C) and the application, clipped to 0..255
    one = fit_affine_torch(s[0], r[0], m[0], samples=4096, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(one.numpy(), cf[0], atol=1e-3, rtol=0)
    y = apply_affine_torch(torch.full((2, 2, 3), 250.0), one).numpy()
    np.testing.assert_allclose(y, np.minimum(250 * gain[0] + offset[0], 255)[None, None].repeat(2, 0).repeat(2, 1),
                               atol=0.5)


@pytest.mark.parametrize("background_on_left", [True, False])
def test_torch_fill_takes_holes_from_the_background_side(background_on_left):
    """A disocclusion between a far surface (z = disparity 1) and a near one (z = 6): every hole
    pixel gets the far surface's colour, none the near one's, even beside the near edge."""
    import torch
    from backend.pipelines.stereo.fill import inpaint_background_torch

    h, w = 12, 40
    img = np.zeros((h, w, 3), np.float32)
    z = np.zeros((h, w), np.float32)
    far, near = np.array([40.0, 80.0, 160.0]), np.array([250.0, 10.0, 10.0])
    hole = np.zeros((h, w), bool)
    hole[:, 16:24] = True
    a, b = (np.s_[:, :16], np.s_[:, 24:]) if background_on_left else (np.s_[:, 24:], np.s_[:, :16])
    img[a], z[a] = far, 1.0
    img[b], z[b] = near, 6.0
    z[hole] = -np.inf
    img[hole] = 0.0
    t = lambda x: torch.from_numpy(x)  # noqa: E731
    out = inpaint_background_torch(t(img), t(hole), t(z)).numpy()
    np.testing.assert_allclose(out[hole], np.broadcast_to(far, (hole.sum(), 3)), atol=1e-4)
    np.testing.assert_array_equal(out[~hole], img[~hole])  # only holes change
    # batched (B, H, W, C) gives the same, frame by frame
    both = inpaint_background_torch(t(np.stack([img, img[:, ::-1].copy()])), t(np.stack([hole, hole[:, ::-1].copy()])),
                                    t(np.stack([z, z[:, ::-1].copy()]))).numpy()
    np.testing.assert_allclose(both[0], out, atol=1e-5)
    np.testing.assert_allclose(both[1], out[:, ::-1], atol=1e-5)
