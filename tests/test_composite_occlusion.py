"""Compositor tree rendered headless on a tiny synthetic shot with an occluder.

The shot is a 160x90 synthetic clip (true cameras, true planar depth) with a tall cylinder
standing between the camera and the target. The product (the sample bottle, scaled to 0.8 m)
stands at the target, behind the cylinder; the true depth plays the splat depth. Checked:

* occlusion: product pixels where the scene is nearer than the product equal the footage
  (8-bit round trip: at most 2 levels), product pixels elsewhere equal an unoccluded render;
* shadow catcher: the ground around the product is darker than the footage, far from it the
  footage is untouched;
* resumability: after deleting one output frame a re-run renders only that frame.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.pipelines.composite import placement
from backend.pipelines.composite.blender import run_shot
from backend.pipelines.composite.layers import FAR
from backend.pipelines.render.writers import write_exr
from backend.synthetic import make_clip

REPO = Path(__file__).resolve().parents[1]
PRODUCT = REPO / "backend" / "samples" / "product.glb"
W, H = 160, 90
HEIGHT = 0.8
FRAMES = (0, 2)
ANCHOR = np.zeros(3)  # the synthetic scene's look-at target stands behind the occluder
ROUNDTRIP = 2  # levels: sRGB PNG -> linear float -> sRGB PNG


def _exr(path: Path, depth: np.ndarray) -> Path:
    d = np.where(np.isfinite(depth), depth, FAR).astype(np.float32)
    write_exr(path, {"R": d, "G": d, "B": d})
    return path


def _spec(clip: Path, tmp: Path, name: str, occlude: bool) -> dict:
    far = _exr(tmp / "far.exr", np.full((H, W), np.inf, np.float32))
    frames = []
    for i in FRAMES:
        depth = _exr(tmp / f"depth{i}.exr", np.load(clip / "depth" / f"{i:06d}.npy")) if occlude else far
        frames.append({"index": i, "background": str(clip / "frames" / f"{i:06d}.png"), "depth": str(depth),
                       "output": str(tmp / name / f"{i:06d}.png")})
    return {"cameras": str(clip / "truth.json"), "product": str(PRODUCT), "anchor": ANCHOR.tolist(),
            "product_height": HEIGHT, "rotate_deg": 0.0, "frame_offset": 1,
            "render": {"percent": 100, "samples": 4, "denoise": False, "threads": 2, "device": "CPU"},
            "environment": None, "occlusion_margin": 0.03, "frames": frames}


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("occlusion")
    clip = make_clip(tmp / "clip", path="handheld", width=W, height=H, frames=4, samples=4, occluder=True,
                     video=False, seed=0)["dir"]
    specs = {name: _spec(clip, tmp, name, occlude) for name, occlude in (("occluded", True), ("free", False))}
    counts = {name: run_shot(spec, tmp / f"{name}.json") for name, spec in specs.items()}
    return {"clip": clip, "tmp": tmp, "specs": specs, "counts": counts,
            "truth": json.loads((clip / "truth.json").read_text())}


def _img(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return img.astype(np.int16)


def _product_box(truth: dict, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Image bounding box of the product's world bounding box in frame ``i`` (its GLB is
    0.0723 m wide and 0.25 m tall, scaled to HEIGHT)."""
    r = 0.036144 * HEIGHT / 0.25
    corners = np.array([[x, y, z] for x in (-r, r) for y in (-r, r) for z in (0.0, HEIGHT)]) + ANCHOR
    cam = placement.PinholeCamera.from_frame(placement.frame_for_video_index(truth, i))
    px, _ = cam.project(corners)
    return px.min(0), px.max(0)


def _box_mask(truth: dict, i: int, pad: float = 1.0):
    lo, hi = _product_box(truth, i)
    vv, uu = np.mgrid[0:H, 0:W] + 0.5
    inside = (uu > lo[0] - pad) & (uu < hi[0] + pad) & (vv > lo[1] - pad) & (vv < hi[1] + pad)
    return inside, np.hypot(uu - (lo[0] + hi[0]) / 2, vv - hi[1])


@pytest.mark.parametrize("i", FRAMES)
def test_product_is_hidden_behind_the_occluder_and_visible_elsewhere(shot, i):
    clip, tmp = shot["clip"], shot["tmp"]
    bg = _img(clip / "frames" / f"{i:06d}.png")
    occ, free = _img(tmp / "occluded" / f"{i:06d}.png"), _img(tmp / "free" / f"{i:06d}.png")
    inside, _ = _box_mask(shot["truth"], i, pad=0.0)
    product = inside & (np.abs(free - bg).max(2) > 8)  # the bottle where nothing hides it
    cam = placement.PinholeCamera.from_frame(placement.frame_for_video_index(shot["truth"], i))
    anchor_depth = cam.project(ANCHOR)[1][0]
    # within the product's box the ground is at most the bottle's radius (0.12 m) nearer than
    # the anchor; the occluder stands ~0.9 m in front of it
    nearer = np.load(clip / "depth" / f"{i:06d}.npy") < anchor_depth - 0.3
    hidden, shown = product & nearer, product & ~nearer
    assert hidden.sum() >= 30 and shown.sum() >= 30, (hidden.sum(), shown.sum())
    assert np.abs(occ - bg)[hidden].max() <= ROUNDTRIP
    assert np.abs(occ - free)[shown].max() <= 1
    assert (np.abs(occ - bg).max(2)[shown] > 8).all()


@pytest.mark.parametrize("i", FRAMES)
def test_shadow_catcher_darkens_the_ground_near_the_product_only(shot, i):
    """The product hides part of the sky from the ground around it: a contact shadow that
    fades with distance (uniform world light, so no cast direction)."""
    bg = _img(shot["clip"] / "frames" / f"{i:06d}.png")
    free = _img(shot["tmp"] / "free" / f"{i:06d}.png")
    inside, dist = _box_mask(shot["truth"], i)
    diff = (free - bg).mean(2)
    near, far = ~inside & (dist < 10), ~inside & (dist > 60)
    assert near.sum() > 50 and far.sum() > 1000
    assert diff[near].mean() < -2.0, diff[near].mean()
    assert abs(diff[far].mean()) < 0.5, diff[far].mean()


def test_rerun_renders_only_the_missing_frame(shot):
    tmp, spec = shot["tmp"], shot["specs"]["occluded"]
    assert shot["counts"]["occluded"]["rendered"] == len(FRAMES)
    outputs = [Path(f["output"]) for f in spec["frames"]]
    before = {p: (p.stat().st_mtime_ns, _img(p)) for p in outputs}
    outputs[0].unlink()
    counts = run_shot(spec, tmp / "rerun.json")
    assert counts["rendered"] == 1 and counts["skipped"] == len(FRAMES) - 1
    assert outputs[1].stat().st_mtime_ns == before[outputs[1]][0]
    assert np.abs(_img(outputs[0]) - before[outputs[0]][1]).max() <= 1  # the same frame again
    assert not list((tmp / "occluded").glob(".*partial*"))
