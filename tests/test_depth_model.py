"""Monocular depth models from weights/: a tiny randomly initialised transformers model saved
with save_pretrained and loaded through the real loader, the exported format, missing files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backend.models.depth import (ExportedDepth, TransformersDepth, has_metric_model,
                                  load_depth_model, metric_depth)
from backend.progress import JobError

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SIZE = 56  # the processor's target size (Depth Anything uses 518), a multiple of the patch 14


def save_tiny_depth_anything(folder, kind="metric", max_depth=20):
    """A randomly initialised Depth Anything (2-layer 32-wide DINOv2) + its image processor."""
    from transformers import (DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config,
                              DPTImageProcessor)

    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, patch_size=14, image_size=SIZE,
                            out_features=["stage1", "stage2"], reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32,
                              neck_hidden_sizes=[16, 32], fusion_hidden_size=16, head_hidden_size=8,
                              reassemble_factors=[4, 2], depth_estimation_type=kind,
                              max_depth=max_depth)
    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(cfg).eval()
    # Random head weights so the output depends on the image (the default init is constant).
    with torch.no_grad():
        for p in model.head.parameters():
            p.normal_(0.0, 0.5)
    processor = DPTImageProcessor(do_resize=True, size={"height": SIZE, "width": SIZE},
                                  keep_aspect_ratio=True, ensure_multiple_of=14, do_rescale=True,
                                  rescale_factor=1 / 255, do_normalize=True,
                                  image_mean=MEAN.tolist(), image_std=STD.tolist(), do_pad=False)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def metric_weights(tmp_path_factory):
    weights = tmp_path_factory.mktemp("weights")
    save_tiny_depth_anything(weights / "depth")
    return weights


def _two_colour_frame(h=90, w=160):
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = (200, 40, 30)
    rgb[:, w // 2:] = (30, 60, 220)
    return rgb


def test_tiny_metric_model_loads_and_runs_end_to_end(metric_weights):
    assert has_metric_model(metric_weights)
    model = load_depth_model(metric_weights, require_metric=True)
    assert isinstance(model, TransformersDepth) and model.metric and model.output == "depth"
    seen = {}
    model.model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.update(x=kwargs.get("pixel_values", args[0] if args else None)),
        with_kwargs=True)
    rgb = _two_colour_frame()
    depth = metric_depth(model, rgb)
    # Fed the resized, normalised frame: keep_aspect_ratio scales 90x160 by 56/90 (the factor
    # closer to 1), 160 * 56/90 = 99.6 rounds to the multiple of 14 = 98.
    x = seen["x"][0].numpy()
    assert x.shape == (3, 56, 98)
    left, right = x[:, :, :45].reshape(3, -1), x[:, :, 53:].reshape(3, -1)
    expect_l = (np.array([200, 40, 30]) / 255.0 - MEAN) / STD
    expect_r = (np.array([30, 60, 220]) / 255.0 - MEAN) / STD
    # Uniform regions resample to themselves; 1/255 of rounding is 0.018 after the std.
    np.testing.assert_allclose(left.mean(1), expect_l, atol=0.02)
    np.testing.assert_allclose(right.mean(1), expect_r, atol=0.02)
    # Output: the frame's size, metres in (0, max_depth), and it depends on the image.
    assert depth.shape == rgb.shape[:2] and depth.dtype == np.float32
    assert np.isfinite(depth).all() and (depth > 0).all() and (depth < 20.0).all()
    other = metric_depth(model, rgb[:, ::-1].copy())
    assert not np.allclose(other, depth)


def test_relative_model_is_not_metric_unless_declared(tmp_path):
    folder = save_tiny_depth_anything(tmp_path / "depth", kind="relative")
    assert not has_metric_model(tmp_path)
    model = load_depth_model(tmp_path)
    assert not model.metric and model.output == "inverse_depth"
    with pytest.raises(JobError) as err:
        load_depth_model(tmp_path, require_metric=True)
    assert err.value.code == "not_metric" and "splatstage.json" in err.value.message
    (folder / "splatstage.json").write_text(json.dumps({"metric": True, "output": "depth"}))
    assert has_metric_model(tmp_path)
    assert load_depth_model(tmp_path, require_metric=True).metric


@pytest.mark.parametrize("remove", ["config.json", "model.safetensors", "preprocessor_config.json"])
def test_missing_file_is_one_line_naming_it(metric_weights, tmp_path, remove):
    import shutil

    shutil.copytree(metric_weights / "depth", tmp_path / "depth")
    (tmp_path / "depth" / remove).unlink()
    with pytest.raises(JobError) as err:
        load_depth_model(tmp_path, require_metric=True)
    msg = err.value.message
    assert err.value.code == "missing_weights" and "\n" not in msg
    assert str(tmp_path / "depth" / remove) in msg and "weights/README.md" in msg


def test_empty_weights_folder(tmp_path):
    with pytest.raises(JobError) as err:
        load_depth_model(tmp_path)
    assert err.value.code == "missing_weights"
    assert "depth/config.json" in err.value.message and "depth_model.pt2" in err.value.message
    assert not has_metric_model(tmp_path)


class _TinyRelativeNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))[:, 0] + x.mean(dim=1) + 3.0


def test_exported_relative_network_still_loads(tmp_path):
    (tmp_path / "depth").mkdir()
    torch.manual_seed(0)
    net = _TinyRelativeNet().eval()
    example = torch.rand(1, 3, 28, 56)
    torch.export.save(torch.export.export(net, (example,)), str(tmp_path / "depth" / "depth_model.pt2"))
    (tmp_path / "depth" / "config.json").write_text(json.dumps({"input_size": 56}))
    model = load_depth_model(tmp_path)
    assert isinstance(model, ExportedDepth) and not model.metric
    y = model(_two_colour_frame(45, 90))
    assert y.shape == (45, 90) and np.isfinite(y).all()
    with pytest.raises(JobError) as err:
        load_depth_model(tmp_path, require_metric=True)
    assert err.value.code == "missing_weights"


def test_stereo_warp_uses_a_transformers_depth_folder(metric_weights, tmp_path):
    """``stereo --method warp`` without --depth takes the depth model through the same loader
    (a metric model's depth becomes the inverse depth the warp expects)."""
    import imageio_ffmpeg

    from backend.jobs import stereo as job
    from backend.progress import Progress

    video = tmp_path / "clip.mp4"
    writer = imageio_ffmpeg.write_frames(str(video), (96, 64), fps=24, macro_block_size=1)
    writer.send(None)
    rng = np.random.default_rng(0)
    for _ in range(2):
        writer.send(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    writer.close()
    res = job.run({"input": str(video), "weights": str(metric_weights), "method": "warp"},
                  tmp_path / "out", Progress())
    assert res.summary["depth"] == "monocular" and res.summary["frames"] == 2
    assert (tmp_path / "out" / job.MAIN_OUTPUT).is_file()
