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
