"""The scene job end to end through the real model loaders: a tiny randomly initialised
Depth Anything (transformers) and Stable-Diffusion inpainting pipeline (diffusers), saved with
save_pretrained into a temporary weights folder and loaded with local_files_only. Quality is not
checked, only that every output is written, readable and finite."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from backend.cli import main as cli


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from tests.test_depth_model import save_tiny_depth_anything
    from tests.test_stereo_inpaint_model import build_tiny_pipeline

    folder = tmp_path_factory.mktemp("weights")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_tiny_depth_anything(folder / "depth", kind="metric", max_depth=10)
        build_tiny_pipeline(folder)
    return folder


def _photo(path, w=64, h=48):
    import cv2

    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 / w, y * 255 / h, 128 + 0 * x], -1) + rng.normal(0, 12, (h, w, 3))
    cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))
    return path


@pytest.mark.filterwarnings("ignore")
def test_tiny_models_run_the_scene_job_end_to_end(tiny_weights, tmp_path, capsys):
    from backend.media.video import probe
    from backend.pipelines.reconstruct.scene import load_solve
    from backend.pipelines.splats_io import read_ply

    out = tmp_path / "scene"
    code = cli(["scene", str(_photo(tmp_path / "photo.png")), "-o", str(out), "--weights", str(tiny_weights),
                "--views", "2", "--steps", "2", "--rounds", "1", "--inference-steps", "2", "--preview-frames", "2",
                "--fov", "60", "--device", "cpu", "--prompt", "a room"])
    assert code == 0, capsys.readouterr().err
    splats = read_ply(out / "splats.ply")
    assert len(splats) >= 64 * 48
    for a in (splats.means, splats.scales, splats.opacities, splats.sh0):
        assert np.isfinite(a).all()
    solve = load_solve(out)
    assert len(solve.sources) == 3 and np.isfinite(solve.c2w).all()
    assert probe(out / "preview.mp4").frame_count == 2
    summary = json.loads((out / "scene.json").read_text())
    # outpainting, the photo's depth and one denoise per generated view at least (a view the
    # splats cover entirely calls no model)
    assert summary["metric"] and summary["model_calls"] >= 2 + 2
    assert summary["seconds"]["models"] > 0
    assert (out / "coarse_strip.png").is_file() and (out / "refine_strip.png").is_file()


def test_missing_weights_name_the_file(tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    code = cli(["scene", str(_photo(tmp_path / "photo.png")), "-o", str(tmp_path / "out"),
                "--weights", str(tmp_path / "weights"), "--device", "cpu"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert code == 1 and len(errors) == 1
    assert "config.json" in errors[0] and "weights/README.md" in errors[0]
    assert not (tmp_path / "out").exists()
