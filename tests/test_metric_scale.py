"""Automatic metric scale: an oracle depth model (the ray-cast scene's true depth with 5 %
multiplicative noise) must give the scene's true scale within 2 %.

The scene (backend.evaluation.raycast_scene) is in metres. A solve is right up to a scale; here
it is the truth shrunk by a known factor, or a real solve of a rendered clip whose world is put
at the 1.6 m camera-height guess. 5 % i.i.d. noise over the ~1000 points of 8 frames leaves a
median error of about 1.25 * 5 % / sqrt(1000) = 0.2 %; the 2 % bound leaves room for samples on
depth edges and points hidden behind boxes in some frames (rejected as outliers).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.evaluation import raycast_scene
from backend.models.oracles import OracleDepth, frame_key
from backend.pipelines.poses.metric_scale import (estimate_metric_scale, sample_map,
                                                  scale_from_frames, scale_from_samples)
from backend.progress import JobError

W, H, F = 320, 180, 280.0


@pytest.fixture(scope="module")
def scene():
    return raycast_scene.Scene()


def _true_points(scene, cams, frames=(0, 3, 7), per_frame=300, seed=1):
    """World points seen by some frames (like tracked points): true depth back-projected."""
    rng = np.random.default_rng(seed)
    pts = []
    for i in frames:
        d = scene.depth(cams[i], F, W, H)
        x = rng.uniform(2, W - 2, per_frame)
        y = rng.uniform(2, H - 2, per_frame)
        z = sample_map(d, np.column_stack([x, y]))
        cam = np.column_stack([(x - W / 2) / F * z, -(y - H / 2) / F * z, -z])
        pts.append(cam @ cams[i][:3, :3].T + cams[i][:3, 3])
    return np.concatenate(pts)


def _views(cams):
    """Stand-in frames: a constant image per view, so the oracle can tell them apart."""
    frames, views = [], {}
    for i, c2w in enumerate(cams):
        rgb = np.full((H, W, 3), 10 + i, np.uint8)
        views[frame_key(rgb)] = c2w
        frames.append((i, rgb, c2w))
    return frames, views


@pytest.mark.parametrize("true_scale", [0.37, 2.7])
def test_oracle_gives_the_true_scale(scene, true_scale):
    cams = raycast_scene.handheld_path(8)
    pts = _true_points(scene, cams)
    frames, views = _views(cams)
    # The "solve": the true world shrunk by true_scale about the origin.
    solved = [(i, rgb, np.vstack([np.column_stack([c[:3, :3], c[:3, 3] / true_scale]), [0, 0, 0, 1]]))
              for i, rgb, c in frames]
    est = scale_from_frames(OracleDepth(scene, views, F, W), solved, pts / true_scale, F, (W / 2, H / 2),
                            width=W)
    assert est.scale == pytest.approx(true_scale, rel=0.02)
    assert est.n_frames == 8 and est.n_points > 1000
    # The per-point spread is the oracle's 5 % per-pixel noise seen through bilinear sampling
    # at random sub-pixel positions: E[(1-t)^2 + t^2] = 2/3 per axis keeps 2/3 of the sigma.
    assert 0.05 * 2 / 3 * 0.85 < est.spread < 0.05 * 2 / 3 * 1.15
    assert 0 < est.uncertainty < 0.01
    stats = est.as_stats()
    assert stats["metric_scale"] == pytest.approx(est.scale, rel=1e-5)


def test_per_frame_model_error_shows_in_the_uncertainty(scene):
    cams = raycast_scene.handheld_path(8)
    pts = _true_points(scene, cams)
    frames, views = _views(cams)
    est = scale_from_frames(OracleDepth(scene, views, F, W, frame_bias=0.1), frames, pts, F,
                            (W / 2, H / 2), width=W)
    # Frame scales spread uniformly over +-10 % (sigma 5.8 %): over 8 frames ~2 % of uncertainty.
    assert 0.008 < est.uncertainty < 0.05
    assert est.scale == pytest.approx(1.0, rel=0.08)


def test_too_few_points_and_disagreeing_depths_are_clear_errors():
    with pytest.raises(JobError) as err:
        scale_from_samples([np.ones(5)], [np.ones(5)])
    assert err.value.code == "scale_failed" and "5 tracked points" in err.value.message
    rng = np.random.default_rng(0)
    with pytest.raises(JobError, match="disagree"):
        scale_from_samples([np.exp(rng.uniform(-5, 5, 200))], [np.ones(200)])


@pytest.mark.parametrize("kind", ["video", "folder"])
def test_frames_are_read_back_by_source(tmp_path, monkeypatch, kind):
    """The frames compared are the solution's own (matched by ``sources``), spread over the
    registered ones. (A real solve with an oracle depth model: tests/test_scale.py.)"""
    import imageio_ffmpeg

    from backend.pipelines.poses import metric_scale
    from backend.pipelines.poses.solution import PoseSolution

    n, w, h = 12, 64, 48
    levels = [15 + 18 * i for i in range(n)]
    if kind == "video":
        path = tmp_path / "clip.mp4"
        writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=24, macro_block_size=1,
                                             output_params=["-crf", "10"])
        writer.send(None)
        for v in levels:
            writer.send(np.full((h, w, 3), v, np.uint8))
        writer.close()
        sources = [str(i) for i in range(n)]
    else:
        path = tmp_path / "frames"
        path.mkdir()
        for i, v in enumerate(levels):
            cv2.imwrite(str(path / f"img{i}.png"), np.full((h, w, 3), v, np.uint8))
        sources = [f"img{i}.png" for i in range(n)]
    registered = np.ones(n, bool)
    registered[[0, 5]] = False
    sol = PoseSolution(width=w, height=h, fps=24.0, sources=sources,
                       matrix_world=np.tile(np.eye(4), (n, 1, 1)), focal_px=50.0,
                       principal_point_px=(w / 2, h / 2), k1=0.0, k2=0.0, registered=registered,
                       reproj_error_px=np.zeros(n))
    seen = {}

    def capture(model, frames, *args, **kwargs):
        seen.update({pos: float(rgb.mean()) for pos, rgb, _ in frames})
        return "estimate"

    monkeypatch.setattr(metric_scale, "scale_from_frames", capture)
    assert estimate_metric_scale(sol, path, model=None, count=4) == "estimate"
    assert sorted(seen) == metric_scale.pick_frames(registered, 4) == [1, 4, 8, 11]
    for pos, mean in seen.items():
        assert abs(mean - levels[pos]) < 4  # the frame at that source, not a neighbour (18 apart)
