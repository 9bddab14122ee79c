"""The main job with a scale reference: the product comes out at the size the scale says.

The committed sample's true cameras are 1.6 m above its floor, where the default guess puts
them. Told the first camera is 0.8 m up, the job must halve its world, so the 0.25 m bottle
stands as tall as a 0.5 m one would in the true scene: in every frame its base and top rows
and its axis column within 2 px of that bottle seen by the true camera (the tolerance of
test_composite_job.py), and the summary says where the scale came from.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from backend.cli import main as cli
from backend.media.video import iter_frames

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "backend" / "samples"
CLIP, PRODUCT = SAMPLES / "sample_clip.mp4", SAMPLES / "product.glb"


def test_camera_height_sets_the_product_size(tmp_path, capsys):
    import cv2

    from backend.pipelines.composite.placement import PinholeCamera, default_pixel, intersect_plane
    from shared_protocol import camera_file
    from test_composite_job import bottle_points, product_pixels

    out = tmp_path / "out.mp4"
    work = tmp_path / "work"
    code = cli(["composite", str(CLIP), str(PRODUCT), "-o", str(out), "--preview", "--steps", "8",
                "--max-frames", "3", "--work-dir", str(work), "--camera-height", "0.8"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "scale: scale from the first camera 0.8 m above the ground" in printed and "scale_warning" not in printed
    truth = json.loads((SAMPLES / "sample_truth.json").read_text())
    solve = camera_file.read(next(work.glob("solve-scaled-*")) / "cameras.json")
    assert abs(camera_file.matrices(solve)[0, 2, 3] - 0.8) < 1e-9
    tc, sc = camera_file.matrices(truth)[:, :3, 3], camera_file.matrices(solve)[:, :3, 3]
    metres_per_unit = np.linalg.norm(tc[-1] - tc[0]) / np.linalg.norm(sc[-1] - sc[0])
    assert abs(metres_per_unit / 2.0 - 1) < 0.01  # the world was halved
    w, h = truth["width"], truth["height"]
    ground = intersect_plane(*PinholeCamera.from_frame(truth["frames"][0]).ray(*default_pixel(w, h)),
                             np.zeros(3), np.array([0.0, 0.0, 1.0]))
    height = 0.25 * metres_per_unit
    outline = bottle_points(ground, [0, 0, 1.0], height)
    s = 240 / w
    footage = [cv2.resize(f, (240, 135), interpolation=cv2.INTER_AREA) for _, _, f in iter_frames(CLIP, 0, 3)]
    frames = [f[:135] for _, _, f in iter_frames(out)]
    assert len(frames) == 3
    for i in range(3):
        cam = PinholeCamera.from_frame(truth["frames"][i])
        sil = cam.project(outline)[0] * s
        mid = cam.project([ground + [0, 0, height / 2]])[0][0] * s
        ys, xs = product_pixels(frames[i], footage[i])
        assert len(ys) > 20, "no product in the frame"
        assert abs(ys.max() + 1 - sil[:, 1].max()) <= 2.0, (i, ys.max() + 1, sil[:, 1].max())
        assert abs(ys.min() - sil[:, 1].min()) <= 2.0, (i, ys.min(), sil[:, 1].min())  # twice the default height
        assert abs(np.median(xs) + 0.5 - mid[0]) <= 2.0, (i, np.median(xs) + 0.5, mid[0])
