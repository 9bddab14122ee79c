"""Layouts, anaglyph channel provenance, debug grid and colour matching."""
from __future__ import annotations

import numpy as np
import pytest

from backend.pipelines.stereo.colour import fit_affine, match_colors
from backend.pipelines.stereo.layouts import LAYOUTS, anaglyph, compose, debug_grid

H, W = 36, 50


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (H, W, 3), dtype=np.uint8), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))


@pytest.mark.parametrize("layout,shape", [("sbs", (H, 2 * W, 3)), ("half-sbs", (H, W, 3)),
                                          ("tab", (2 * H, W, 3)), ("anaglyph", (H, W, 3))])
def test_layout_shapes(pair, layout, shape):
    out = compose(*pair, layout)
    assert out.shape == shape and out.dtype == np.uint8


def test_sbs_and_tab_place_each_eye(pair):
    left, right = pair
    sbs = compose(left, right, "sbs")
    np.testing.assert_array_equal(sbs[:, :W], left)
    np.testing.assert_array_equal(sbs[:, W:], right)
    tab = compose(left, right, "tab")
    np.testing.assert_array_equal(tab[:H], left)
    np.testing.assert_array_equal(tab[H:], right)
    half = compose(left, right, "half-sbs")
    # each half is its eye squeezed 2:1 horizontally (area average of column pairs)
    expect = (left[:, 0:2].astype(float).mean(axis=1))
    assert np.abs(half[:, 0].astype(float) - expect).max() <= 1.0
    assert set(LAYOUTS) == {"sbs", "half-sbs", "tab", "anaglyph"}
    with pytest.raises(ValueError):
        compose(left, right, "checkerboard")


def test_simple_anaglyph_red_from_left_cyan_from_right(pair):
    left, right = pair
    a = anaglyph(left, right, "simple")
    np.testing.assert_array_equal(a[..., 0], left[..., 0])
    np.testing.assert_array_equal(a[..., 1:], right[..., 1:])


def test_dubois_anaglyph_routes_eyes_to_their_filters():
    white = np.full((4, 4, 3), 255, np.uint8)
    black = np.zeros((4, 4, 3), np.uint8)
    left_only = anaglyph(white, black).astype(int)[0, 0]
    right_only = anaglyph(black, white).astype(int)[0, 0]
    # the left eye shows through the red filter only; the right eye through green and blue
    assert left_only[0] > 200 and left_only[1] == 0 and left_only[2] == 0
    assert right_only[0] == 0 and right_only[1] > 200 and right_only[2] > 200
    # a grey point at zero disparity stays a neutral-ish grey
    grey = np.full((2, 2, 3), 128, np.uint8)
    g = anaglyph(grey, grey).astype(int)[0, 0]
    assert max(g) - min(g) < 60


def test_debug_grid(pair):
    left, right = pair
    hole = np.zeros((H, W), bool)
    hole[:, 10:14] = True
    disp = np.tile(np.linspace(0, 5, W, dtype=np.float32), (H, 1))
    g = debug_grid(left, disp, hole, right)
    assert g.shape == (2 * (H // 2), 2 * (W // 2), 3)
    mask_panel = g[H // 2:, : W // 2]
    assert mask_panel[:, 5:7].min() == 255 and mask_panel[:, 15:].max() == 0
    warped_panel = g[H // 2:, W // 2:]
    assert (warped_panel[:, 5:7] == [255, 0, 255]).all()


def test_colour_matching_recovers_gain_and_offset():
    rng = np.random.default_rng(1)
    ref = rng.uniform(20, 230, (40, 40, 3)).astype(np.float32)
    gain, offset = np.array([0.8, 1.1, 0.95]), np.array([12.0, -9.0, 4.0])
    src = (ref - offset) / gain  # so that gain * src + offset == ref
    src[:5] = 0  # outliers: the trimmed refit ignores them
    coeffs = fit_affine(src, ref)
    np.testing.assert_allclose(coeffs[:, 0], gain, rtol=1e-3)
    np.testing.assert_allclose(coeffs[:, 1], offset, atol=0.2)
    out = match_colors(src, ref)
    np.testing.assert_allclose(out[5:], ref[5:], atol=0.2)
