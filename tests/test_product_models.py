"""The product pipeline's model loaders with tiny randomly initialised models saved in their real
formats (a diffusers multi-view pipeline with its views file, a transformers depth model, an
exported background-removal network), run end to end through the ``splatstage product`` CLI."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from backend.progress import JobError
from tests.test_depth_model import save_tiny_depth_anything

TINY_VIEWS = {"views": [{"azimuth_deg": a, "elevation_deg": e} for a, e in ((0, 20), (90, -10), (180, 20), (270, -10))],
              "fov_deg": 30.0, "radius": 2.0, "input_size": 32, "steps": 2, "guidance_scale": 1.0}


def save_tiny_multiview(folder, views=TINY_VIEWS):
    """A randomly initialised image-conditioned diffusion pipeline (Stable Diffusion image
    variations: CLIP vision encoder, UNet, VAE) with its ``splatstage_views.json``."""
    from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionImageVariationPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=4, norm_num_groups=4)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1, image_size=32,
        patch_size=8, projection_dim=16))
    processor = CLIPImageProcessor(crop_size=32, size=32)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionImageVariationPipeline(vae=vae, image_encoder=encoder, unet=unet, scheduler=sched,
                                                 feature_extractor=processor, safety_checker=None,
                                                 requires_safety_checker=False)
    folder.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(folder)
    (folder / "splatstage_views.json").write_text(json.dumps(views))
    return folder


def save_tiny_enhancer(folder, tmp):
    """A randomly initialised Stable Diffusion ControlNet img2img pipeline (the text encoder,
    tokenizer, VAE and scheduler of the tiny inpainting pipeline of the stereo tests, a UNet
    and a ControlNet of the same shape)."""
    from diffusers import (ControlNetModel, StableDiffusionControlNetImg2ImgPipeline,
                           StableDiffusionInpaintPipeline, UNet2DConditionModel)

    from tests.test_stereo_inpaint_model import build_tiny_pipeline

    build_tiny_pipeline(tmp)
    base = StableDiffusionInpaintPipeline.from_pretrained(str(tmp / "inpaint"), local_files_only=True)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4)
    control = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
    pipe = StableDiffusionControlNetImg2ImgPipeline(
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=unet, controlnet=control,
        scheduler=base.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


class TinyCutout(torch.nn.Module):
    """Foreground probability: a fixed disc of the image, modulated by a random convolution."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
        self.register_buffer("disc", (6.0 * (0.5 - (xx ** 2 + yy ** 2).sqrt()))[None, None])

    def forward(self, x):
        return torch.sigmoid(self.disc + 0.1 * self.conv(x))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    w = tmp_path_factory.mktemp("weights")
    save_tiny_multiview(w / "multiview")
    save_tiny_depth_anything(w / "depth", kind="relative")
    (w / "cutout").mkdir()
    prog = torch.export.export(TinyCutout().eval(), (torch.zeros(1, 3, 32, 32),))
    torch.export.save(prog, str(w / "cutout" / "model.pt2"))
    (w / "cutout" / "config.json").write_text(json.dumps({"input_size": 32}))
    save_tiny_enhancer(w / "enhance", tmp_path_factory.mktemp("sd"))
    return w


def test_tiny_models_load_through_the_real_loaders(weights):
    from backend.models.cutout import load_cutout_model
    from backend.models.multiview import load_multiview_model

    mv = load_multiview_model(weights)
    views = mv(np.full((32, 32, 3), 128, np.uint8))
    assert views.shape == (4, 32, 32, 3) and views.dtype == np.uint8 and views.std() > 0
    cut = load_cutout_model(weights)
    a = cut(np.zeros((80, 60, 3), np.uint8))
    assert a.shape == (80, 60) and a[40, 30] > 0.9 and a[0, 0] < 0.1
    from backend.models.enhance import load_enhancer

    enhance = load_enhancer(weights)
    rgb = np.full((32, 32, 3), 120, np.uint8)
    alpha = np.zeros((32, 32), np.float32)
    alpha[8:24, 8:24] = 1.0
    out = enhance(rgb, np.full((32, 32), 2.0, np.float32), alpha)
    assert out.shape == rgb.shape and np.array_equal(out[alpha == 0], rgb[alpha == 0])
    assert np.abs(out[alpha == 1].astype(int) - 120).max() > 0  # the random model changes the object

def test_cli_end_to_end_with_tiny_models(weights, tmp_path):
    import trimesh

    from backend.pipeline_cli import run_argv
    from backend.pipelines.splats_io import read_ply
    from shared_protocol import glb_check

    img = np.full((96, 96, 3), 200, np.uint8)
    cv2.circle(img, (48, 48), 25, (30, 90, 200), -1)
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), img)
    out = tmp_path / "product"
    assert run_argv(["product", str(photo), "-o", str(out), "--weights", str(weights), "--preview",
                     "--steps", "5", "--train-size", "32", "--height", "0.25", "--device", "cpu"]) == 0
    summary = json.loads((out / "product.json").read_text())
    assert summary["height_m"] == 0.25
    assert summary["cutout"] == "model" and summary["depth_source"] == "depth model" and summary["enhanced"]
    splats = read_ply(out / "product.ply")
    assert len(splats) > 0 and np.isfinite(splats.means).all()
    mesh = trimesh.load(out / "product.glb", force="mesh")
    assert abs(mesh.extents[1] - 0.25) < 1e-6  # glTF +Y up: the mesh stands 0.25 m tall
    assert abs(mesh.bounds[0][1]) < 1e-6  # its base on the ground
    info = glb_check.inspect(out / "product.glb", ())  # the composite's own check: no extension needed
    assert not info.extensions_required
    assert (out / "turntable.mp4").stat().st_size > 0


def test_broken_views_file_is_one_line(weights, tmp_path):
    import shutil

    from backend.models.multiview import load_multiview_model

    w = tmp_path / "w"
    shutil.copytree(weights / "multiview", w / "multiview")
    (w / "multiview" / "splatstage_views.json").write_text("{not json")
    with pytest.raises(JobError) as err:
        load_multiview_model(w)
    assert err.value.code == "bad_weights" and "splatstage_views.json" in str(err.value)
    (w / "multiview" / "splatstage_views.json").unlink()
    with pytest.raises(JobError) as err:
        load_multiview_model(w)
    assert err.value.code == "missing_weights" and "splatstage_views.json" in str(err.value)
