"""The main job with a scale reference: the product comes out at the size the scale says.

The solve reused is the committed sample's true cameras (1.6 m above its floor, ground z = 0)
and the reconstruction flat splats on that floor, so nothing is solved or trained. Told the
first camera is 0.8 m up, the job must halve its world (solve and splats), so the 0.25 m
bottle stands as tall as a 0.5 m one would in the true scene: in every frame its base and top
rows and its axis column within 2 px of that bottle seen by the true camera (the tolerance of
test_composite_job.py; the product's pixels are the largest group of pixels that differ from
the footage, leaving out the scene's magenta markers, which its shadow dims), and the summary
says where the scale came from. The folder given is left as it was.
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


def _largest_blob(ys, xs):
    """The product: the largest 8-connected group of changed pixels (the codec's stray pixels at
    sharp edges elsewhere are single pixels)."""
    import cv2

    mask = np.zeros((int(ys.max()) + 2, int(xs.max()) + 2), np.uint8)
    mask[ys, xs] = 1
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = labels[ys, xs] == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return ys[keep], xs[keep]


def test_camera_height_sets_the_product_size(tmp_path, capsys):
    import cv2

    from backend.pipelines.composite.placement import PinholeCamera, default_pixel, intersect_plane
    from shared_protocol import camera_file
    from test_composite_job import bottle_points, product_pixels

    from backend.pipelines.splats_io import Splats, write_ply
    from backend.pipelines.poses.points_ply import write_points

    truth = json.loads((SAMPLES / "sample_truth.json").read_text())
    solve_dir, recon = tmp_path / "solve", tmp_path / "recon"
    solve_dir.mkdir()
    doc = {k: truth[k] for k in ("version", "convention", "width", "height", "fps", "frames", "distortion",
                                 "ground_plane")}
    for fr in doc["frames"]:
        fr["source"] = str(fr["frame"])
    camera_file.write(solve_dir / "cameras.json", doc)
    g = np.linspace(-2.0, 2.0, 11)
    xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    write_points(solve_dir / "points.ply", np.c_[xy, np.zeros(len(xy))], np.full((len(xy), 3), 128),
                 np.full(len(xy), 2))
    g = np.linspace(-3.0, 3.0, 61)
    xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    n = len(xy)
    write_ply(Splats(means=np.c_[xy, np.zeros(n)], scales=np.log([[0.06, 0.06, 0.002]] * n),
                     quats=np.tile([1.0, 0, 0, 0], (n, 1)), opacities=np.full(n, 4.0), sh0=np.zeros((n, 3))),
              recon / "splats.ply")
    before = (solve_dir / "cameras.json").read_bytes()
    out = tmp_path / "out.mp4"
    work = tmp_path / "work"
    code = cli(["composite", str(CLIP), str(PRODUCT), "-o", str(out), "--preview", "--max-frames", "3",
                "--work-dir", str(work), "--solve", str(solve_dir), "--reconstruction", str(recon),
                "--camera-height", "0.8"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "scale: scale from the first camera 0.8 m above the ground" in printed and "scale_is_guess: False" in printed
    assert (solve_dir / "cameras.json").read_bytes() == before
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
        f = footage[i][ys, xs].astype(int)
        marker = (f[:, 0] > 150) & (f[:, 2] > 150) & (f[:, 1] < 100)  # the scene's magenta markers, which
        ys, xs = _largest_blob(ys[~marker], xs[~marker])                # the product's shadow dims
        assert len(ys) > 20, "no product in the frame"
        assert abs(ys.max() + 1 - sil[:, 1].max()) <= 2.0, (i, ys.max() + 1, sil[:, 1].max())
        assert abs(ys.min() - sil[:, 1].min()) <= 2.0, (i, ys.min(), sil[:, 1].min())  # twice the default height
        assert abs(np.median(xs) + 0.5 - mid[0]) <= 2.0, (i, np.median(xs) + 0.5, mid[0])
