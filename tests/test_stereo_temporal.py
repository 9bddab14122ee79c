"""Temporal hole filling on an analytic clip whose right eyes are known exactly.

A textured card (disparity 5 px) slides left over a textured wall (disparity 1 px), with a
static camera. The 4 px wide strip of wall right of the card is hidden in the left view at
frame t but visible at t + 1 and t + 2, so filling from neighbours can recover it.
"""
from __future__ import annotations

import numpy as np
import pytest

import backend.pipelines.stereo.temporal as temporal
from backend.evaluation.image_metrics import psnr
from backend.pipelines.stereo.analytic import Layer, stereo_clip
from backend.pipelines.stereo.fill import inpaint_background
from backend.pipelines.stereo.warp import warp_right

H, W, T = 120, 160, 7


@pytest.fixture(scope="module")
def clip():
    layers = [Layer(depth=10.0, seed=1),
              Layer(depth=2.0, x0=60, y0=30, width=30, height=60, velocity=-3.0, seed=2)]
    return stereo_clip(layers, H, W, T, focal_px=100.0, interaxial=0.1)


def disocclusion(hole):
    last = np.where(~hole, np.arange(W)[None], -1).max(axis=1)
    return hole & ~(np.arange(W)[None] > last[:, None])


def _run(clip, t):
    lefts, rights, disps = clip
    out = warp_right(lefts[t], disps[t])
    neighbours = [(lefts[s], disps[s]) for s in (t - 1, t + 1, t - 2, t + 2)]
    filled, remaining, n = temporal.temporal_fill(out.image, out.hole, out.z, lefts[t], neighbours)
    return out, filled, remaining, n


def test_true_background_motion_recovers_hidden_wall_exactly(clip, monkeypatch):
    # the wall does not move: its true optical flow is zero
    monkeypatch.setattr(temporal, "optical_flow", lambda a, b, scale=None: np.zeros((H, W, 2), np.float32))
    lefts, rights, disps = clip
    out, filled, remaining, n = _run(clip, 3)
    dis = disocclusion(out.hole)
    assert dis.sum() == 4 * 60  # card height x (5 - 1) px
    assert n == dis.sum() and not (remaining & dis).any()
    np.testing.assert_allclose(filled[dis], rights[3][dis], atol=1e-3)


def test_estimated_flow_temporal_fill_beats_spatial_fill(clip):
    lefts, rights, disps = clip
    for t in (2, 3, 4):
        out, filled, remaining, _ = _run(clip, t)
        dis = disocclusion(out.hole)
        temporal_then_spatial = inpaint_background(filled, remaining, out.z)
        spatial = inpaint_background(out.image, out.hole, out.z)
        p_t = psnr(temporal_then_spatial, rights[t], mask=dis)
        p_s = psnr(spatial, rights[t], mask=dis)
        # recovering the real wall instead of guessing it: at least 4x lower squared error
        assert p_t > p_s + 6.0, (t, p_t, p_s)


def test_occluder_in_neighbour_is_rejected(clip, monkeypatch):
    monkeypatch.setattr(temporal, "optical_flow", lambda a, b, scale=None: np.zeros((H, W, 2), np.float32))
    lefts, rights, disps = clip
    out = warp_right(lefts[3], disps[3])
    # at t - 1 the card covers the strip: nothing may be taken from it
    _, remaining, n = temporal.temporal_fill(out.image, out.hole, out.z, lefts[3], [(lefts[2], disps[2])])
    assert n == 0
    np.testing.assert_array_equal(remaining, out.hole)


def test_sample_points_handles_more_points_than_opencv_maps_allow():
    img = np.tile(np.arange(300, dtype=np.float32), (200, 1))[..., None].repeat(3, axis=2)
    rng = np.random.default_rng(0)
    xs = rng.uniform(0, 299, 40000).astype(np.float32)
    ys = rng.uniform(0, 199, 40000).astype(np.float32)
    out = temporal.sample_points(img, xs, ys)
    assert out.shape == (40000, 3)
    np.testing.assert_allclose(out[:, 0], xs, atol=0.05)  # bilinear on a ramp (OpenCV's 1/32 px grid)
    assert np.isnan(temporal.sample_points(img[..., 0], np.array([-5.0]), np.array([3.0]))).all()
