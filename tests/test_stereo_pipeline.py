"""The depth-warp method end to end on an analytic clip with exact right eyes."""
from __future__ import annotations

import numpy as np
import pytest

from backend.evaluation.image_metrics import psnr, temporal_flicker
from backend.pipelines.stereo.analytic import Layer, stereo_clip
from backend.pipelines.stereo.chunks import chunks
from backend.pipelines.stereo.pipeline import WarpSettings, depth_warp_stereo
from backend.progress import JobError

H, W, T = 72, 128, 9
F, B = 100.0, 0.1


@pytest.fixture(scope="module")
def clip():
    layers = [Layer(depth=10.0, seed=4),
              Layer(depth=2.5, x0=40, y0=15, width=24, height=40, velocity=-2.0, seed=5),
              Layer(depth=5.0, x0=80, y0=30, width=20, height=30, velocity=1.0, seed=6)]
    lefts, rights, disps = stereo_clip(layers, H, W, T, F, B)
    u8 = lambda a: np.clip(np.rint(a), 0, 255).astype(np.uint8)  # noqa: E731
    return [u8(x) for x in lefts], [u8(x) for x in rights], disps


def run(clip, **kw):
    lefts, _, disps = clip
    depth = lambda i, rgb: ("metric", F * B / disps[i])  # noqa: E731  planar depth of every pixel
    s = WarpSettings(interaxial=B, convergence=1e12, **kw)  # convergence at infinity: no shift
    return list(depth_warp_stereo(iter(lefts), depth, s, focal_px=F))


def test_chunks_tile_the_stream_with_context():
    for n in (0, 1, 5, 16, 17):
        seen = []
        for ch in chunks(range(n), 4, 2):
            seen += list(ch.core())
            assert ch.items == list(range(ch.start, ch.start + len(ch.items)))
            assert ch.start == max(0, ch.core_start - 2) and ch.start + len(ch.items) == min(n, ch.core_stop + 2)
        assert seen == list(range(n))


def test_chunked_equals_unchunked(clip):
    whole = run(clip, chunk=1000)
    for size in (1, 4):
        parts = run(clip, chunk=size)
        assert [r.index for r in parts] == list(range(T))
        for a, b in zip(whole, parts):
            np.testing.assert_array_equal(a.right, b.right)
            np.testing.assert_array_equal(a.hole, b.hole)


def test_right_eye_matches_truth(clip):
    _, rights, disps = clip
    res = run(clip, chunk=4)
    for r in res:
        np.testing.assert_allclose(r.disparity, disps[r.index], rtol=1e-5)
        last = np.where(~r.hole, np.arange(W)[None], -1).max(axis=1)
        inside = ~(np.arange(W)[None] > last[:, None])
        seen = inside & ~r.hole
        # exact integer disparities: the warp reproduces the true right eye up to 8-bit rounding
        assert psnr(r.right, rights[r.index], mask=seen) > 45
    # the temporal fill found hidden wall in neighbours, and fills do not flicker more than cv2 does
    assert sum(r.temporal_filled for r in res) > 0
    spatial = run(clip, chunk=4, temporal_radius=0, fill="cv2")
    interior = np.zeros((H, W), bool)
    interior[:, : W - 10] = True
    f_ours = temporal_flicker([r.right for r in res], rights, mask=interior)
    f_naive = temporal_flicker([r.right for r in spatial], rights, mask=interior)
    assert f_ours < f_naive


def test_torch_cpu_path_matches_numpy(clip):
    a = run(clip, chunk=4, temporal_radius=0, fill="rows")
    b = run(clip, chunk=4, temporal_radius=0, fill="rows", device="cpu")
    for x, y in zip(a, b):
        assert np.abs(x.right.astype(int) - y.right.astype(int)).max() <= 1
        np.testing.assert_array_equal(x.hole, y.hole)


def test_budget_limits_disparity(clip):
    res = run(clip, chunk=4, max_disparity=2.0)
    for r in res:
        assert np.abs(r.disparity).max() <= 2.0 + 1e-5


def test_bad_settings_and_frames(clip):
    with pytest.raises(JobError):
        run(clip, fill="magic")
    with pytest.raises(JobError):
        list(depth_warp_stereo(iter([np.zeros((4, 4), np.uint8)]), lambda i, f: ("metric", np.ones((4, 4))),
                               WarpSettings(), focal_px=10.0))
    with pytest.raises(JobError, match="focal"):
        list(depth_warp_stereo(iter(clip[0][:2]), lambda i, f: ("metric", np.ones((H, W))), WarpSettings()))
