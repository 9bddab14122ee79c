"""Warp and fill on a real rectified pair with ground-truth disparity (Middlebury 2003 Cones).

The left image is warped with the true disparity to the right view and compared with the real
right image. Where the right view sees what the left sees, the forward warp must be as good as
sampling the right image at the true correspondences (an independent backward warp: the
residual is then only photometric difference between the cameras and resampling). In the
disoccluded region the depth-aware fill must beat the naive warp + cv2.inpaint baseline.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.evaluation.image_metrics import psnr, ssim
from backend.pipelines.stereo.disparity import complete_disparity
from backend.pipelines.stereo.fill import fill_background, inpaint_background, inpaint_cv2
from backend.pipelines.stereo.warp import warp_right


@pytest.fixture(scope="module")
def cones():
    from conftest import shared_path

    d = shared_path("middlebury-cones")
    left = cv2.imread(str(d / "left_rgb.tif"), cv2.IMREAD_UNCHANGED)
    right = cv2.imread(str(d / "right_rgb.tif"), cv2.IMREAD_UNCHANGED)
    disp = cv2.imread(str(d / "Cones_LEFT_GT.tif"), cv2.IMREAD_UNCHANGED)
    nonocc = cv2.imread(str(d / "Occlusion_LEFT.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert left is not None and right is not None and disp is not None
    return left.astype(np.float32), right.astype(np.float32), disp.astype(np.float32), nonocc


def border_mask(hole):
    """Right-eye pixels right of the last warped pixel of their row: outside the left camera's view."""
    w = hole.shape[1]
    last = np.where(~hole, np.arange(w)[None], -1).max(axis=1)
    return np.arange(w)[None] > last[:, None]


def test_warp_with_true_disparity_matches_real_right_view(cones):
    left, right, disp, nonocc = cones
    valid = disp > 0
    out = warp_right(left, disp, valid=valid & nonocc)
    covered = ~out.hole
    assert covered.mean() > 0.75
    # reference: the right image sampled at every left pixel's true correspondence (backward warp)
    h, w = disp.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    back = cv2.remap(right, xs - disp, ys, cv2.INTER_LINEAR)
    ref_mask = valid & nonocc & (xs - disp >= 0)
    ref_psnr = psnr(back, left, mask=ref_mask)
    ref_ssim = ssim(back, left, mask=ref_mask)
    got_psnr = psnr(out.image, right, mask=covered)
    got_ssim = ssim(out.image, right, mask=covered)
    # both resample once with bilinear weights over the same correspondences: within 1 dB / 0.05
    assert got_psnr >= ref_psnr - 1.0, (got_psnr, ref_psnr)
    assert got_ssim >= ref_ssim - 0.05, (got_ssim, ref_ssim)
    # and far better than not warping at all
    assert got_psnr > psnr(left, right, mask=covered) + 10.0


def test_depth_aware_fill_beats_naive_inpaint_in_disoccluded_region(cones):
    left, right, disp, _ = cones
    full = complete_disparity(disp, valid=disp > 0)
    out = warp_right(left, full)
    disoccluded = out.hole & ~border_mask(out.hole)
    assert disoccluded.sum() > 2000  # Cones has thin disocclusions beside every cone and the mask
    naive = inpaint_cv2(out.image, out.hole, radius=3)
    ours = inpaint_background(out.image, out.hole, out.z)
    row = fill_background(out.image, out.hole, out.z)
    n_psnr, n_ssim = psnr(naive, right, mask=disoccluded), ssim(naive, right, mask=disoccluded)
    for filled in (ours, row):
        o_psnr, o_ssim = psnr(filled, right, mask=disoccluded), ssim(filled, right, mask=disoccluded)
        assert o_psnr > n_psnr + 0.5, (o_psnr, n_psnr)
        assert o_ssim > n_ssim, (o_ssim, n_ssim)
    # filling touches holes only
    np.testing.assert_array_equal(ours[~out.hole], out.image[~out.hole])
