"""Loading and running the optional diffusers inpainting fill with a tiny random pipeline."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from backend.progress import JobError


def test_missing_inpainting_model_names_the_folder(tmp_path):
    from backend.models.inpaint import DiffusersInpainter

    with pytest.raises(JobError, match="model_index.json") as e:
        DiffusersInpainter(tmp_path)
    assert e.value.code == "missing_weights"


def build_tiny_pipeline(folder):
    """A randomly initialised Stable-Diffusion-style inpainting pipeline, saved with save_pretrained."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=9, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=4, norm_num_groups=4)
    text = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=16,
                                        intermediate_size=16, num_attention_heads=2, num_hidden_layers=1,
                                        vocab_size=100, projection_dim=16))
    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz"):
        vocab[ch], vocab[ch + "</w>"] = 3 + i, 40 + i
    tok_dir = folder / "tokenizer_src"
    tok_dir.mkdir(parents=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=8)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionInpaintPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tok, scheduler=sched,
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder / "inpaint")


@pytest.mark.filterwarnings("ignore")
def test_tiny_random_pipeline_loads_and_fills_only_holes(tmp_path):
    from backend.models.inpaint import DiffusersInpainter
    from backend.pipelines.stereo.pipeline import WarpSettings, synthesize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_tiny_pipeline(tmp_path)
        inpaint = DiffusersInpainter(tmp_path, steps=2)
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (30, 44, 3)).astype(np.float32)  # odd-multiple size: padded to 8
    hole = np.zeros((30, 44), bool)
    hole[10:20, 12:18] = True
    out = inpaint(img, hole)
    assert out.shape == img.shape
    np.testing.assert_array_equal(out[~hole], img[~hole])
    assert np.isfinite(out).all() and 0 <= out.min() and out.max() <= 255
    # deterministic (seeded) and used by the pipeline's diffusers fill
    np.testing.assert_array_equal(out, inpaint(img, hole))
    left = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    disp = np.zeros((32, 48), np.float32)
    disp[:, 20:30] = 6.0
    r = synthesize(left, disp, [], WarpSettings(fill="diffusers", temporal_radius=0), inpainter=inpaint)
    assert r.hole.any() and r.right.shape == left.shape
