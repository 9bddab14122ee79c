"""Geometry of the forward warp: exact shifts, z-buffering, holes, convergence and budget."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.pipelines.stereo.disparity import (apply_budget, complete_disparity, disparity_from_depth,
                                                disparity_from_relative)
from backend.pipelines.stereo.warp import forward_warp, warp_right

H, W = 24, 96


def ramp(h=H, w=W):
    """RGB image that is linear in x (different slope per channel): bilinear splats reproduce it exactly."""
    x = np.arange(w, dtype=np.float32)
    img = np.stack([2.0 * x + 1.0, 0.5 * x + 10.0, -1.25 * x + 200.0], axis=-1)
    return np.broadcast_to(img, (h, w, 3)).copy()


def _np(a):
    return a.numpy() if isinstance(a, torch.Tensor) else a


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("depth", [2.0, 3.125, 7.0])
def test_fronto_parallel_plane_shifts_by_f_b_over_z(backend, depth):
    f, b = 80.0, 0.25
    d_true = f * b / depth  # 10, 6.4, 2.857... px
    disp = disparity_from_depth(np.full((H, W), depth, np.float32), f, b)
    assert np.allclose(disp, d_true, atol=1e-5)
    left = ramp()
    src = torch.from_numpy(left) if backend == "torch" else left
    out = warp_right(src, torch.from_numpy(disp) if backend == "torch" else disp)
    img, hole = _np(out.image), _np(out.hole)
    x = np.arange(W)
    # right pixel x sees left pixel x + d: defined while x + d <= W - 1
    inside = x + d_true <= W - 1
    expected = ramp()[:, :1, :] + 0 * img  # broadcast shape
    slopes = np.array([2.0, 0.5, -1.25], np.float32)
    offsets = np.array([1.0, 10.0, 200.0], np.float32)
    expected = (x[:, None] + d_true) * slopes + offsets
    assert not hole[:, inside].any()
    np.testing.assert_allclose(img[:, inside], np.broadcast_to(expected[inside], img[:, inside].shape),
                               atol=2e-3)
    # beyond the right edge nothing lands (x > W - 1 - d), one pixel of partial cover aside
    assert hole[:, x > W - d_true].all()


def test_integer_shift_is_exact_translation():
    rng = np.random.default_rng(0)
    left = rng.uniform(0, 255, (H, W, 3)).astype(np.float32)
    out = warp_right(left, np.full((H, W), 7.0, np.float32))
    np.testing.assert_array_equal(out.image[:, : W - 7], left[:, 7:])
    assert out.hole[:, W - 7:].all() and not out.hole[:, : W - 7].any()


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_zbuffer_keeps_nearer_surface_and_marks_disocclusion(backend):
    # far strip (d=2) at x in [20, 40) with value 50, near strip (d=10) at [40, 60) with 200,
    # background elsewhere at d=2 with value 0.
    left = np.zeros((H, W), np.float32)
    disp = np.full((H, W), 2.0, np.float32)
    left[:, 20:40] = 50.0
    left[:, 40:60] = 200.0
    disp[:, 40:60] = 10.0
    args = (torch.from_numpy(left), torch.from_numpy(disp)) if backend == "torch" else (left, disp)
    out = warp_right(*args)
    img, hole = _np(out.image), _np(out.hole)
    # near strip lands on [30, 50): it wins over the far strip's [18, 38)
    np.testing.assert_array_equal(img[:, 30:50], 200.0)
    np.testing.assert_array_equal(img[:, 18:30], 50.0)
    # disocclusion: right eye x in [50, 58) sees background hidden behind the near strip in the left
    # view (left x in [52, 60)); every other pixel left of the border is covered
    expected_hole = np.zeros(W, bool)
    expected_hole[50:58] = True
    expected_hole[W - 2:] = True  # right border: left x = x + 2 > W - 1
    np.testing.assert_array_equal(hole, np.broadcast_to(expected_hole, (H, W)))
    # the z-buffer holds the winning disparity
    np.testing.assert_array_equal(_np(out.z)[:, 30:50], 10.0)


def test_zbuffer_independent_of_pixel_order():
    # near strip to the LEFT of a far one that moves onto it: still the near one wins
    left = np.zeros((H, W), np.float32)
    disp = np.zeros((H, W), np.float32)
    left[:, 30:40] = 100.0
    disp[:, 30:40] = 5.0  # lands on [25, 35)
    left[:, 40:50] = 20.0
    disp[:, 40:50] = -8.0  # farther than the convergence plane: moves right, onto [48, 58)
    left[:, 60:70] = 220.0
    disp[:, 60:70] = 12.0  # near, moves left onto [48, 58): must hide the far strip
    out = warp_right(left, disp)
    np.testing.assert_array_equal(out.image[:, 48:58], 220.0)
    np.testing.assert_array_equal(out.image[:, 25:30], 100.0)


def test_torch_matches_numpy_on_random_scene():
    rng = np.random.default_rng(1)
    left = rng.uniform(0, 255, (32, 64, 3)).astype(np.float32)
    disp = rng.uniform(-3, 12, (32, 64)).astype(np.float32)
    dy = rng.uniform(-1.5, 1.5, (32, 64)).astype(np.float32)
    a = forward_warp(left, -disp, z=disp, dy=dy)
    b = forward_warp(torch.from_numpy(left), torch.from_numpy(-disp), z=torch.from_numpy(disp),
                     dy=torch.from_numpy(dy))
    np.testing.assert_array_equal(a.hole, b.hole.numpy())
    np.testing.assert_allclose(a.image, b.image.numpy(), atol=1e-3)
    np.testing.assert_allclose(a.weight, b.weight.numpy(), atol=1e-5)


def test_invalid_source_pixels_are_not_warped():
    left = np.full((H, W), 9.0, np.float32)
    disp = np.zeros((H, W), np.float32)
    valid = np.ones((H, W), bool)
    valid[:, 10:20] = False
    disp[:, 40] = np.nan
    out = warp_right(left, disp, valid=valid)
    assert out.hole[:, 10:20].all() and out.hole[:, 40].all()
    assert not out.hole[:, :10].any()


def test_convergence_plane_has_zero_disparity_and_warps_to_itself():
    f, b, zc = 1000.0, 0.065, 3.0
    depth = np.array([[1.5, 3.0, 6.0, np.inf]], np.float32)
    d = disparity_from_depth(depth, f, b, convergence=zc)
    assert d[0, 1] == pytest.approx(0.0, abs=1e-4)
    assert d[0, 0] == pytest.approx(f * b * (1 / 1.5 - 1 / 3.0), rel=1e-5)  # in front of the screen
    assert d[0, 2] == pytest.approx(f * b * (1 / 6.0 - 1 / 3.0), rel=1e-5)  # behind it: negative
    assert d[0, 3] == pytest.approx(-f * b / zc, rel=1e-5)  # infinity: the full sensor shift
    rng = np.random.default_rng(2)
    left = rng.uniform(0, 255, (H, W, 3)).astype(np.float32)
    plane = disparity_from_depth(np.full((H, W), zc, np.float32), f, b, convergence=zc)
    out = warp_right(left, plane)
    np.testing.assert_allclose(out.image, left, atol=1e-3)


def test_budget_scales_but_keeps_convergence_plane():
    d = np.linspace(-30, 60, 1000, dtype=np.float32).reshape(10, 100)
    out = apply_budget(d, 20.0, scale=None)
    assert np.abs(out).max() <= 20.0 + 1e-5
    zero = np.argmin(np.abs(d))
    # scaling, not shifting: the sign pattern (front/behind the screen) is unchanged
    assert np.array_equal(np.sign(out), np.sign(d))
    assert abs(out.ravel()[zero]) <= abs(d.ravel()[zero])
    small = np.full((4, 4), 3.0, np.float32)
    np.testing.assert_array_equal(apply_budget(small, 20.0), small)


def test_relative_inverse_depth_maps_onto_budget():
    inv = np.linspace(0.0, 1.0, 101, dtype=np.float32)[None].repeat(3, 0)
    d = disparity_from_relative(inv, 24.0, convergence_fraction=0.25, lo=0.0, hi=1.0)
    assert d.max() == pytest.approx(18.0) and d.min() == pytest.approx(-6.0)
    assert d[0, 25] == pytest.approx(0.0, abs=1e-5)


def test_complete_disparity_uses_farther_neighbour():
    d = np.array([[5.0, 5.0, 0.0, 0.0, 2.0, 2.0],
                  [0.0, 0.0, 3.0, 0.0, 0.0, 0.0]], np.float32)
    out = complete_disparity(d, valid=d > 0)
    np.testing.assert_array_equal(out[0], [5, 5, 2, 2, 2, 2])
    np.testing.assert_array_equal(out[1], [3, 3, 3, 3, 3, 3])


@pytest.mark.gpu
def test_cuda_matches_numpy_at_1080p():
    rng = np.random.default_rng(3)
    left = rng.uniform(0, 255, (1080, 1920, 3)).astype(np.float32)
    disp = (np.round(rng.uniform(0, 40, (1080, 1920)) / 8) * 8 + 0.25).astype(np.float32)
    a = warp_right(left, disp)
    b = warp_right(torch.from_numpy(left).cuda(), torch.from_numpy(disp).cuda())
    np.testing.assert_array_equal(a.hole, b.hole.cpu().numpy())
    np.testing.assert_allclose(a.image, b.image.cpu().numpy(), atol=1e-2)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_behind_edges_marks_background_side_only(backend):
    from backend.pipelines.stereo.warp import behind_edges

    d = np.full((2, 12), 1.0, np.float32)
    d[:, 5:8] = 9.0  # a near strip
    arg = torch.from_numpy(d) if backend == "torch" else d
    bad = _np(behind_edges(arg, radius=2, jump=3.0))
    expected = np.zeros(12, bool)
    expected[[3, 4, 8, 9]] = True  # two background pixels each side, never the strip itself
    np.testing.assert_array_equal(bad, np.broadcast_to(expected, (2, 12)))
    assert not _np(behind_edges(arg, radius=2, jump=9.0)).any()
