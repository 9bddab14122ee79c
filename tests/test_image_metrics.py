"""PSNR, SSIM and flicker against closed-form values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from backend.evaluation.image_metrics import psnr, ssim, temporal_flicker


def test_psnr_of_constant_offset():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 200, (20, 30, 3))
    assert psnr(a, a + 5.0) == pytest.approx(10 * math.log10(255 ** 2 / 25.0))
    assert psnr(a, a) == math.inf
    assert psnr(a / 255, (a + 5.0) / 255, data_range=1.0) == pytest.approx(10 * math.log10(255 ** 2 / 25.0))


def test_masked_psnr_sees_only_the_mask():
    a = np.zeros((10, 10))
    b = np.zeros((10, 10))
    b[:, 5:] = 10.0
    mask = np.zeros((10, 10), bool)
    mask[:, 5:] = True
    assert psnr(a, b, mask=mask) == pytest.approx(10 * math.log10(255 ** 2 / 100.0))
    assert psnr(a, b, mask=~mask) == math.inf
    with pytest.raises(ValueError):
        psnr(a, b, mask=np.zeros((10, 10), bool))


def test_ssim_closed_form_on_constant_images():
    # constant images: variances are zero, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    c1 = (0.01 * 255) ** 2
    a, b = 100.0, 140.0
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(np.full((32, 32), a), np.full((32, 32), b)) == pytest.approx(expected, rel=1e-9)
    rng = np.random.default_rng(1)
    img = rng.uniform(0, 255, (32, 32, 3))
    assert ssim(img, img) == pytest.approx(1.0)
    assert ssim(img, 255 - img) < 0  # anticorrelated structure


def test_masked_ssim_localises_damage():
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 255, (64, 64))
    b = a.copy()
    b[:, 40:] = rng.uniform(0, 255, (64, 24))
    left = np.zeros((64, 64), bool)
    left[:, :20] = True
    assert ssim(a, b, mask=left) == pytest.approx(1.0)
    assert ssim(a, b, mask=~left) < 0.5


def test_temporal_flicker():
    rng = np.random.default_rng(3)
    truth = rng.uniform(0, 255, (5, 8, 8, 3))
    assert temporal_flicker(truth, truth) == 0.0
    assert temporal_flicker(truth + 7.0, truth) == pytest.approx(0.0, abs=1e-9)  # a constant bias does not flicker
    signs = np.array([1, -1, 1, -1, 1], float)[:, None, None, None]
    assert temporal_flicker(truth + 3.0 * signs, truth) == pytest.approx(6.0)
    mask = np.zeros((8, 8), bool)
    mask[:2] = True
    noisy = truth.copy()
    noisy[:, 4:] += 3.0 * signs
    assert temporal_flicker(noisy, truth, mask=mask) == 0.0
