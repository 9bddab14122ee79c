"""The committed sample assets of ``make demo`` are what ``backend/samples/make_sample.py``
says: a product GLB of the stated height standing on its base, and a clip with the stated
frame count, size and rate whose true cameras see textured ground where the demo places the
product."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backend.samples import make_sample

SAMPLES = Path(make_sample.__file__).resolve().parent
GLB = SAMPLES / "product.glb"
CLIP = SAMPLES / "sample_clip.mp4"
TRUTH = SAMPLES / "sample_truth.json"


def test_product_glb_has_the_stated_size():
    import trimesh

    assert GLB.stat().st_size < 200 * 1024
    scene = trimesh.load(GLB)
    lo, hi = scene.bounds
    # glTF is +Y up: the bottle stands on y = 0 with its axis on x = z = 0
    assert hi[1] - lo[1] == pytest.approx(make_sample.PRODUCT_HEIGHT_M, abs=1e-6)
    assert lo[1] == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_allclose((lo[[0, 2]] + hi[[0, 2]]) / 2, 0.0, atol=1e-6)
    radius = make_sample.BOTTLE_RADIUS_M * 1.004                       # the label wraps the glass
    np.testing.assert_allclose(hi[[0, 2]], radius, rtol=1e-3)
    names = {g.visual.material.name for g in scene.geometry.values()}
    assert names == {"glass", "label", "cap"}


def test_committed_glb_is_what_the_script_builds():
    import trimesh

    built = make_sample.build_product()
    committed = trimesh.load(GLB)
    assert sorted(built.geometry) == sorted(committed.geometry)
    for name, g in built.geometry.items():
        c = committed.geometry[name]
        assert len(c.faces) == len(g.faces)
        np.testing.assert_allclose(np.sort(c.vertices, axis=0), np.sort(g.vertices, axis=0), atol=1e-6)


def test_clip_decodes_with_the_stated_frames():
    import imageio_ffmpeg

    assert CLIP.stat().st_size < 1.5 * 2**20
    gen = imageio_ffmpeg.read_frames(str(CLIP))
    meta = next(gen)
    assert tuple(meta["size"]) == (make_sample.CLIP["width"], make_sample.CLIP["height"])
    assert meta["fps"] == pytest.approx(make_sample.CLIP["fps"], rel=1e-3)
    frames = sum(1 for _ in gen)
    assert frames == make_sample.CLIP["frames"]


def _frame0() -> np.ndarray:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(CLIP))
    meta = next(gen)
    w, h = meta["size"]
    return np.frombuffer(next(gen), np.uint8).reshape(h, w, 3)


def test_clip_has_trackable_ground_texture():
    """Camera solvers need many well-spread corners; the lower half (the ground) must have them."""
    import cv2

    grey = cv2.cvtColor(_frame0(), cv2.COLOR_RGB2GRAY)
    h = grey.shape[0]
    corners = cv2.goodFeaturesToTrack(grey[h // 2:], maxCorners=2000, qualityLevel=0.01, minDistance=8)
    assert corners is not None and len(corners) >= 100, 0 if corners is None else len(corners)


def test_demo_placement_lands_on_the_ground():
    """The demo's default anchor, the centre of the lower third of frame 0, seen through the true
    camera, hits the ground plane z = 0 in front of the camera inside the scene's floor."""
    truth = json.loads(TRUTH.read_text())
    assert (truth["width"], truth["height"], len(truth["frames"])) == (
        make_sample.CLIP["width"], make_sample.CLIP["height"], make_sample.CLIP["frames"])
    fr = truth["frames"][0]
    m = np.array(fr["matrix_world"])
    f, (cx, cy) = fr["focal_px"], fr["principal_point_px"]
    u, v = truth["width"] / 2, truth["height"] * 5 / 6
    ray = m[:3, :3] @ np.array([(u - cx) / f, -(v - cy) / f, -1.0])     # Blender camera axes
    t = -m[2, 3] / ray[2]
    assert t > 0
    hit = m[:3, 3] + t * ray
    ground = next(o for o in truth["scene"] if o["role"] == "ground")
    assert np.all(np.abs(hit[:2]) < np.array(ground["size"][:2]) / 2)
