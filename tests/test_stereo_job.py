"""The stereo job adapter: video in, stereo MP4 out, with audio, layouts and clear errors."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from backend.jobs import stereo as job
from backend.media.encode import audio_codec, ffmpeg_exe, write_video
from backend.pipelines.stereo.analytic import Layer, stereo_clip
from backend.progress import JobError, Progress

H, W, T, F, B = 64, 96, 6, 80.0, 0.1


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """An analytic clip as an MP4 with a sine audio track, plus its exact depth and right eyes."""
    root = tmp_path_factory.mktemp("stereo_job")
    layers = [Layer(depth=8.0, seed=7), Layer(depth=2.0, x0=30, y0=12, width=20, height=30, velocity=-2.0, seed=8)]
    lefts, rights, disps = stereo_clip(layers, H, W, T, F, B)
    depth_dir = root / "depth"
    depth_dir.mkdir()
    for i, d in enumerate(disps):
        np.save(depth_dir / f"{i:06d}.npy", (F * B / d).astype(np.float32))
    (root / "cameras.json").write_text(json.dumps({"frames": [{"focal_px": F}]}))
    sine = root / "sine.m4a"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000", "-t", "0.5", "-c:a", "aac", str(sine)], check=True)
    video = write_video(root / "left.mp4", [np.clip(x, 0, 255).astype(np.uint8) for x in lefts], 12,
                        audio_from=sine, crf=0)
    return {"video": video, "depth": depth_dir, "root": root}


def frames_of(path):
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    w, h = meta["size"]
    out = [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in gen]
    return meta, out


def _params(clip, **kw):
    p = {"input": str(clip["video"]), "depth": str(clip["depth"]), "interaxial": B, "convergence": 1e9}
    p.update(kw)
    return p


@pytest.mark.parametrize("layout,size", [("sbs", (2 * W, H)), ("half-sbs", (W, H)), ("tab", (W, 2 * H)),
                                         ("anaglyph", (W, H))])
def test_layouts_keep_fps_audio_and_frames(clip, tmp_path, layout, size):
    res = job.run(_params(clip, layout=layout), tmp_path, Progress())
    out = tmp_path / job.MAIN_OUTPUT
    assert res.files == [job.MAIN_OUTPUT] and out.is_file()
    meta, frames = frames_of(out)
    assert tuple(meta["size"]) == size and meta["fps"] == pytest.approx(12.0)
    assert len(frames) == T
    assert audio_codec(out) == "aac" and res.summary["audio"] is True
    assert res.summary["frames"] == T and res.summary["depth"].startswith("file:")
    # metric depth with the file's focal length: disparities are f*B/Z = 1 and 4 px
    assert res.summary["disparity_px"] == pytest.approx([1.0, 4.0], abs=1e-3)
    assert res.arrays["hole_fraction"].shape == (T,)


def test_sbs_right_half_is_the_synthesised_right_eye(clip, tmp_path):
    job.run(_params(clip, layout="sbs", crf=0), tmp_path, Progress())
    _, frames = frames_of(tmp_path / job.MAIN_OUTPUT)
    _, left = frames_of(clip["video"])
    luma = lambda a: a.astype(float) @ [0.299, 0.587, 0.114]  # noqa: E731  (chroma is subsampled)
    # the left half is the footage; the right half is shifted by the 1 px wall disparity
    assert np.abs(luma(frames[0][:, :W]) - luma(left[0])).mean() < 2.0
    wall = luma(frames[0][:8, W:W + 40])
    assert np.abs(wall - luma(left[0][:8, 1:41])).mean() < 2.0
    assert np.abs(wall - luma(left[0][:8, 0:40])).mean() > 4.0  # unshifted would be wrong


def test_debug_grid(clip, tmp_path):
    res = job.run(_params(clip, debug_grid=True, max_frames=2), tmp_path, Progress())
    meta, frames = frames_of(tmp_path / job.MAIN_OUTPUT)
    assert tuple(meta["size"]) == (W, H) and len(frames) == 2
    assert res.summary["layout"] == "debug-grid"


def test_missing_depth_model_names_the_file(clip, tmp_path):
    with pytest.raises(JobError, match="depth_model.pt2") as e:
        job.run({"input": str(clip["video"]), "weights": str(tmp_path / "w")}, tmp_path / "o", Progress())
    assert e.value.code == "missing_weights"


def test_bad_params(clip, tmp_path):
    for bad in ({"layout": "checkerboard"}, {"method": "magic"}, {"max_frames": 0},
                {"depth": str(tmp_path / "nope")}, {"fill": "x"}, {"max_disparity": -1}):
        with pytest.raises(JobError) as e:
            job.run(_params(clip, **bad), tmp_path / "o", Progress())
        assert e.value.code in ("bad_params", "bad_input"), bad
    with pytest.raises(JobError, match="reconstruction"):
        job.run(_params(clip, method="scene"), tmp_path / "o", Progress())


def test_cli_arguments_round_trip(clip, tmp_path):
    import argparse

    p = argparse.ArgumentParser()
    job.add_arguments(p)
    args = p.parse_args([str(clip["video"]), "--layout", "tab", "--debug-grid", "--method", "warp",
                         "--interaxial", "0.05", "--convergence", "3", "--max-disparity", "20",
                         "--depth", str(clip["depth"])])
    params = job.params_from_args(args)
    assert params["layout"] == "tab" and params["debug_grid"] and params["method"] == "warp"
    assert params["interaxial"] == 0.05 and params["convergence"] == 3 and params["max_disparity"] == 20
    assert params["input"] == str(clip["video"].resolve())
    json.dumps(params)


class InverseDepthOfBrightness(__import__("torch").nn.Module):
    """Stand-in monocular model: 'inverse depth' = mean brightness (deterministic, no weights)."""

    def forward(self, x):
        return x.mean(dim=1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_monocular_depth_spans_the_budget(clip, tmp_path):
    import torch

    from backend.pipelines.stereo.depth import MONO_MODEL

    weights = tmp_path / "weights"
    (weights / "depth").mkdir(parents=True)
    (weights / "depth" / "config.json").write_text(json.dumps({"input_size": 56}))
    torch.jit.save(torch.jit.trace(InverseDepthOfBrightness(), torch.rand(1, 3, 42, 56)), str(weights / MONO_MODEL))
    res = job.run({"input": str(clip["video"]), "weights": str(weights), "max_disparity": 6.0, "convergence": 0.25},
                  tmp_path / "o", Progress())
    assert res.summary["depth"] == "monocular" and res.summary["frames"] == T
    lo, hi = res.summary["disparity_px"]
    # normalised inverse depth in [0, 1] (1st..99th percentile) minus the convergence fraction, times 6 px
    assert lo == pytest.approx(-6.0 * 0.25, abs=1e-4) and hi == pytest.approx(6.0 * 0.75, abs=1e-4)


class NearIsBright(__import__("torch").nn.Module):
    """Stand-in monocular model with a known answer on ``bright_near_clip``: relative inverse depth
    1 where a pixel is bright (the near layer) and 0 where it is dark (the far wall); ``sign=-1``
    is the same model with its sign inverted (nearer = smaller), which the test must reject."""

    def __init__(self, sign: float):
        super().__init__()
        self.sign = sign

    def forward(self, x):
        return self.sign * (x.mean(dim=1) > 0.5).float()


def _save_model(weights, sign):
    import torch

    from backend.pipelines.stereo.depth import MONO_MODEL

    (weights / "depth").mkdir(parents=True)
    # the model sees the frame at its own size, in [0, 1] (no mean/std normalisation)
    (weights / "depth" / "config.json").write_text(json.dumps(
        {"input_size": W, "multiple": 1, "mean": [0, 0, 0], "std": [1, 1, 1]}))
    torch.jit.save(torch.jit.trace(NearIsBright(sign), torch.rand(1, 3, H, W)), str(weights / MONO_MODEL))
    return weights


def _shift_px(left, right, ys, xs):
    """The shift s (0.25 px steps) with right(x - s) = left(x) over the region: its disparity."""
    luma = lambda a: a.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])  # noqa: E731
    lf, rt = luma(left), luma(right)
    grid = np.arange(W, dtype=np.float32)
    best = min((np.abs(np.stack([np.interp(xs - s, grid, rt[y]) for y in ys]) - lf[ys][:, xs]).mean(), s)
               for s in np.arange(-8.0, 8.01, 0.25))
    return best[1]


@pytest.fixture(scope="module")
def bright_near_clip(tmp_path_factory):
    """A dark far wall (depth 8, texture in [0, 90]) and a bright near card (depth 2, [165, 255])."""
    from backend.pipelines.stereo.analytic import smooth_texture

    root = tmp_path_factory.mktemp("bright_near")
    far = smooth_texture(H, W + 256, 7) * (90 / 255)
    near = 165 + smooth_texture(H, W + 256, 8) * (90 / 255)
    layers = [Layer(depth=8.0, texture=far), Layer(depth=2.0, x0=30, y0=12, width=20, height=30, texture=near)]
    lefts, _, _ = stereo_clip(layers, H, W, 2, F, B)
    return write_video(root / "left.mp4", [np.clip(x, 0, 255).astype(np.uint8) for x in lefts], 12, crf=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_monocular_nearer_regions_get_larger_disparity(bright_near_clip, tmp_path, sign):
    """With inverse depth 1 on the near card and 0 on the wall, a 6 px budget and convergence at a
    quarter of the range, the card must be shifted by +4.5 px (x_right = x_left - d) and the wall
    by -1.5 px in the right eye; the sign-inverted model swaps them, and the check sees it."""
    weights = _save_model(tmp_path / "weights", sign)
    job.run({"input": str(bright_near_clip), "weights": str(weights), "max_disparity": 6.0, "convergence": 0.25,
             "layout": "sbs", "crf": 0}, tmp_path / "o", Progress())
    _, frames = frames_of(tmp_path / "o" / job.MAIN_OUTPUT)
    _, left = frames_of(bright_near_clip)
    sbs = frames[0]
    card = _shift_px(left[0], sbs[:, W:], np.arange(18, 36), np.arange(34, 42))  # inside the card, off its edges
    wall = _shift_px(left[0], sbs[:, W:], np.arange(0, 10), np.arange(10, 86))  # rows above the card
    expected = (4.5, -1.5) if sign > 0 else (-1.5, 4.5)
    # the whole-pixel part of a shift is exact; bilinear splatting and yuv420 chroma leave < 0.5 px
    assert abs(card - expected[0]) <= 0.5 and abs(wall - expected[1]) <= 0.5, (card, wall)
    if sign > 0:
        assert card > wall + 5.0  # nearer = larger disparity
