"""The CPU rasterizer and the render service against analytic expectations.

A Gaussian at camera-space (x, y, z) with covariance S projects (EWA, pinhole) to
mean (f x/z + cx, f y/z + cy) and covariance J S J^T + 0.3 I, with J = [[f/z, 0, -f x/z^2],
[0, f/z, -f y/z^2]]; the rendered alpha at pixel centre p is o * exp(-0.5 d^T Sigma^-1 d),
d = p - mean (kept if >= 1/255). Front-to-back compositing of two opaque-ish layers gives
c1 a1 + c2 a2 (1 - a1).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backend.pipelines.reconstruct.raster_torch import rasterize
from backend.pipelines.reconstruct.scene import blender_to_viewmats, viewmats_to_blender
from backend.pipelines.render import cameras_from_arrays, cameras_from_json, render_views
from backend.pipelines.render.writers import write_exr, write_sequence
from backend.pipelines.splats_io import SH_C0, Splats

W, H, F = 64, 48, 50.0
K = torch.tensor([[F, 0.0, W / 2], [0.0, F, H / 2], [0.0, 0.0, 1.0]])


def _render(means, quats, scales, opac, colors, viewmat=None, **kw):
    vm = torch.eye(4) if viewmat is None else viewmat
    return rasterize(torch.tensor(means, dtype=torch.float32), torch.tensor(quats, dtype=torch.float32),
                     torch.tensor(scales, dtype=torch.float32), torch.tensor(opac, dtype=torch.float32),
                     torch.tensor(colors, dtype=torch.float32), vm[None], K[None], W, H, **kw)


def _expected_alpha(mean2d, cov2d, opacity):
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    d = np.stack([xs - mean2d[0], ys - mean2d[1]], -1)
    S = np.asarray(cov2d) + 0.3 * np.eye(2)
    m = np.einsum("...i,ij,...j->...", d, np.linalg.inv(S), d)
    a = np.minimum(opacity * np.exp(-0.5 * m), 0.999)
    return np.where(a >= 1 / 255, a, 0.0)


def test_isotropic_gaussian_on_axis_matches_projection():
    z, s, o = 4.0, 0.2, 0.9
    rgb, alpha, info = _render([[0.0, 0.0, z]], [[1, 0, 0, 0]], [[s, s, s]], [o], [[0.2, 0.6, 1.0]])
    sig_px = F * s / z  # 2.5 px
    exp_a = _expected_alpha((W / 2, H / 2), np.eye(2) * sig_px ** 2, o)
    np.testing.assert_allclose(alpha[0, ..., 0].numpy(), exp_a, atol=2e-6)
    # colour is premultiplied by alpha on a black background
    np.testing.assert_allclose(rgb[0].numpy(), exp_a[..., None] * np.array([0.2, 0.6, 1.0]), atol=2e-6)
    # the opacity-aware bounding box: ceil(sqrt(2 ln(255 o)) * sqrt(sigma^2 + 0.3))
    r = np.ceil(np.sqrt(2 * np.log(255 * o)) * np.sqrt(sig_px ** 2 + 0.3))
    assert info["radii"][0, 0].tolist() == [r, r]


def test_off_axis_rotated_gaussian_matches_ewa():
    mean = np.array([0.5, -0.3, 5.0])
    ang = np.radians(30.0)
    q = [np.cos(ang / 2), 0.0, 0.0, np.sin(ang / 2)]  # 30 degrees about the optical axis
    scales = np.array([0.3, 0.1, 0.05])
    _, alpha, info = _render([mean.tolist()], [q], [scales.tolist()], [0.8], [[1.0, 1.0, 1.0]])
    R = np.array([[np.cos(ang), -np.sin(ang), 0], [np.sin(ang), np.cos(ang), 0], [0, 0, 1]])
    S = R @ np.diag(scales ** 2) @ R.T
    x, y, z = mean
    J = np.array([[F / z, 0, -F * x / z ** 2], [0, F / z, -F * y / z ** 2]])
    m2 = (F * x / z + W / 2, F * y / z + H / 2)
    np.testing.assert_allclose(info["means2d"][0, 0].numpy(), m2, atol=1e-5)
    exp_a = _expected_alpha(m2, J @ S @ J.T, 0.8)
    np.testing.assert_allclose(alpha[0, ..., 0].numpy(), exp_a, atol=2e-6)


def test_two_layers_composite_front_to_back_and_depth():
    means = [[0.0, 0.0, 3.0], [0.0, 0.0, 6.0]]  # listed near first; also test reversed order
    for order in ([0, 1], [1, 0]):
        m = [means[i] for i in order]
        cols = [[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]][i] for i in order]
        scales = [[[0.3] * 3, [0.6] * 3][i] for i in order]
        opac = [[0.7, 0.9][i] for i in order]
        rgb, alpha, _ = _render(m, [[1, 0, 0, 0]] * 2, scales, opac, cols, render_mode="RGB+ED")
        c = rgb[0, H // 2, W // 2].numpy()  # pixel centre (32.5, 24.5): 0.5 px off both means
        a1 = 0.7 * np.exp(-0.5 * 0.5 / ((F * 0.3 / 3) ** 2 + 0.3))
        a2 = 0.9 * np.exp(-0.5 * 0.5 / ((F * 0.6 / 6) ** 2 + 0.3))
        np.testing.assert_allclose(c[:3], [a1, 0.0, a2 * (1 - a1)], atol=1e-5)
        total = a1 + a2 * (1 - a1)
        np.testing.assert_allclose(alpha[0, H // 2, W // 2, 0].item(), total, atol=1e-5)
        np.testing.assert_allclose(c[3], (3.0 * a1 + 6.0 * a2 * (1 - a1)) / total, atol=1e-4)


def test_gradients_flow_to_all_parameters():
    torch.manual_seed(0)
    n = 20
    means = (torch.rand(n, 3) - 0.5) * torch.tensor([2.0, 1.5, 1.0]) + torch.tensor([0, 0, 4.0])
    params = [means, torch.randn(n, 4), torch.rand(n, 3) * 0.1 + 0.05, torch.rand(n) * 0.8 + 0.1,
              torch.rand(n, 4, 3)]
    for p in params:
        p.requires_grad_(True)
    out, _, info = rasterize(*params, torch.eye(4)[None], K[None], W, H, sh_degree=1)
    info["means2d"].retain_grad()
    out.mean().backward()
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # densification reads screen-space gradients of the visible Gaussians
    assert info["means2d"].grad[0][(info["radii"][0] > 0).all(-1)].abs().sum() > 0


def test_blender_camera_conversion_round_trip():
    # a camera at (0, -5, 1) looking along +Y (Blender: rotate the -Z view axis onto +Y)
    mw = np.array([[1, 0, 0, 0], [0, 0, -1, -5], [0, 1, 0, 1], [0, 0, 0, 1]], float)
    v = blender_to_viewmats(mw)
    # a world point straight ahead lands on the optical axis at depth 5 (OpenCV +z forward)
    p = v @ np.array([0.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(p[:3], [0, 0, 5], atol=1e-12)
    # world +Z (up) is image up, i.e. OpenCV -y
    p = v @ np.array([0.0, 0.0, 2.0, 1.0])
    assert p[1] < 0
    np.testing.assert_allclose(viewmats_to_blender(v), mw, atol=1e-12)


def _single_splat(pos, colour, scale=0.1, opacity=0.95):
    return Splats(means=[pos], scales=np.log([[scale] * 3]), quats=[[1, 0, 0, 0]],
                  opacities=[np.log(opacity / (1 - opacity))], sh0=[(np.array(colour) - 0.5) / SH_C0])


def test_render_service_batches_cameras_and_scales_intrinsics(tmp_path):
    splat = _single_splat([0.0, 0.0, 1.0], [0.8, 0.4, 0.2])
    # three Blender cameras on the -Y axis looking at +Y, at distances 4, 5, 6
    mws = [np.array([[1, 0, 0, 0], [0, 0, -1, -d], [0, 1, 0, 1], [0, 0, 0, 1]], float) for d in (4, 5, 6)]
    doc = {"version": 1, "convention": "blender", "width": 128, "height": 96, "fps": 24,
           "frames": [{"frame": i, "source": str(i), "matrix_world": m.tolist(), "focal_px": 100.0,
                       "principal_point_px": [64.0, 48.0]} for i, m in enumerate(mws)]}
    (tmp_path / "cameras.json").write_text(json.dumps(doc))
    cams = cameras_from_json(tmp_path / "cameras.json", width=64)  # half resolution: f = 50
    assert (cams.width, cams.height) == (64, 48)
    np.testing.assert_allclose(cams.Ks[0], [[50, 0, 32], [0, 50, 24], [0, 0, 1]])
    out = render_views(splat, cams, batch=2)
    assert out["rgb"].shape == (3, 48, 64, 3) and out["alpha"].shape == (3, 48, 64)
    for k, d in enumerate((4, 5, 6)):
        a = out["alpha"][k]
        ys, xs = np.mgrid[0:48, 0:64] + 0.5
        # the splat projects to the principal point: alpha-weighted centroid is there
        assert abs((a * xs).sum() / a.sum() - 32) < 1e-3 and abs((a * ys).sum() / a.sum() - 24) < 1e-3
        # peak alpha 0.95 * exp(-0.5 * 0.5 / sigma^2) at the four centre pixels; depth is d
        sig2 = (50 * 0.1 / d) ** 2 + 0.3
        np.testing.assert_allclose(a[23:25, 31:33], 0.95 * np.exp(-0.25 / sig2), atol=1e-5)
        np.testing.assert_allclose(out["depth"][k][23:25, 31:33], d, atol=1e-4)
        np.testing.assert_allclose(out["rgb"][k][24, 32], np.array([0.8, 0.4, 0.2]) * a[24, 32], atol=1e-5)
        assert np.isinf(out["depth"][k][0, 0]) and out["alpha"][k][0, 0] == 0
    # the same cameras as Blender arrays give the same images
    arr = cameras_from_arrays(mws, 100.0, [64.0, 48.0], 64, 48, src_size=(128, 96))
    out2 = render_views(splat, arr, batch=3)
    np.testing.assert_allclose(out2["rgb"], out["rgb"], atol=1e-6)



def test_device_render_variant_keeps_tensors_and_matches_the_host_render():
    from backend.pipelines.render import render_views_device, splats_to_tensors

    splat = _single_splat([0.0, 0.0, 1.0], [0.8, 0.4, 0.2])
    mws = [np.array([[1, 0, 0, 0], [0, 0, -1, -d], [0, 1, 0, 1], [0, 0, 0, 1]], float) for d in (4, 5, 6)]
    cams = cameras_from_arrays(mws, 50.0, [32.0, 24.0], 64, 48)
    host = render_views(splat, cams, batch=2)
    g = splats_to_tensors(splat, torch.device("cpu"))
    for batch in (2, 16):  # several rasterizer calls, or one
        dev = render_views_device(splat, cams, batch=batch, gaussians=g)
        for k in ("rgb", "alpha", "depth"):
            assert isinstance(dev[k], torch.Tensor) and dev[k].shape == host[k].shape
            np.testing.assert_array_equal(dev[k].numpy(), host[k])
    empty = render_views_device(splat, cameras_from_arrays(np.zeros((0, 4, 4)), 50.0, [32.0, 24.0], 64, 48))
    assert empty["rgb"].shape == (0, 48, 64, 3) and empty["depth"].shape == (0, 48, 64)


def test_exr_and_png_sequences_round_trip(tmp_path):
    from backend.synthetic.exr import read_exr_channels

    rng = np.random.default_rng(0)
    rgb = rng.random((2, 5, 7, 3), dtype=np.float32)
    alpha = rng.random((2, 5, 7), dtype=np.float32)
    depth = rng.random((2, 5, 7), dtype=np.float32) * 10
    depth[0, 0, 0] = np.inf
    files = write_sequence(tmp_path / "exr", rgb, alpha, depth, "exr")
    assert files == ["render_000000.exr", "render_000001.exr"]
    ch = read_exr_channels(tmp_path / "exr" / files[0])
    np.testing.assert_array_equal(ch["R"], rgb[0, ..., 0])
    np.testing.assert_array_equal(ch["B"], rgb[0, ..., 2])
    np.testing.assert_array_equal(ch["A"], alpha[0])
    np.testing.assert_array_equal(ch["Z"], depth[0])
    files = write_sequence(tmp_path / "png", rgb, alpha, depth, "png")
    import cv2

    back = cv2.cvtColor(cv2.imread(str(tmp_path / "png" / "rgb_000001.png")), cv2.COLOR_BGR2RGB)
    assert np.abs(back / 255.0 - rgb[1]).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError):
        write_exr(tmp_path / "bad.exr", {"R": np.zeros((2, 2)), "G": np.zeros((3, 2))})


def test_render_job_writes_sequence_and_returns_arrays(tmp_path):
    import argparse

    from backend.jobs import render as job
    from backend.pipelines.splats_io import write_ply
    from backend.progress import JobError, Progress

    write_ply(_single_splat([0.0, 0.0, 1.0], [0.2, 0.9, 0.4]), tmp_path / "s.ply")
    mw = np.array([[1, 0, 0, 0], [0, 0, -1, -5], [0, 1, 0, 1], [0, 0, 0, 1]], float)
    doc = {"version": 1, "convention": "blender", "width": 64, "height": 48, "fps": 24,
           "frames": [{"frame": i, "source": str(i), "matrix_world": mw.tolist(), "focal_px": 50.0,
                       "principal_point_px": [32.0, 24.0]} for i in range(2)]}
    (tmp_path / "cameras.json").write_text(json.dumps(doc))
    parser = argparse.ArgumentParser()
    job.add_arguments(parser)
    params = job.params_from_args(parser.parse_args([str(tmp_path / "s.ply"), "--cameras",
                                                     str(tmp_path / "cameras.json"), "--device", "cpu"]))
    assert json.loads(json.dumps(params)) == params
    out = tmp_path / "out"
    out.mkdir()
    res = job.run(params, out, Progress())
    assert res.files == ["render_000000.exr", "render_000001.exr"] and all((out / f).is_file() for f in res.files)
    assert res.arrays["rgb"].shape == (2, 48, 64, 3) and res.summary["cameras"] == 2
    np.testing.assert_allclose(res.arrays["depth"][0, 23:25, 31:33], 5.0, atol=1e-4)
    # the same cameras sent as arrays from Blender, at another resolution
    res2 = job.run({"splats": params["splats"], "matrix_world": [mw.tolist()], "focal_px": [25.0],
                    "principal_point_px": [[16.0, 12.0]], "width": 32, "height": 24, "format": "none",
                    "device": "cpu"}, tmp_path / "o2", Progress())
    assert res2.files == [] and res2.arrays["alpha"].shape == (1, 24, 32)
    for bad in ({"format": "tiff"}, {"width": 0}, {"cameras": None}, {"format": "none", "return_arrays": False}):
        with pytest.raises(JobError) as e:
            job.run({**params, **bad}, tmp_path / "o3", Progress())
        assert e.value.code == "bad_params"
    with pytest.raises(JobError, match="nothing.ply"):
        job.run({**params, "splats": str(tmp_path / "nothing.ply")}, tmp_path / "o4", Progress())
