"""Headless batch (blender_addon/batch.py): clear failures, and a full run against a live backend.

The full run renders a short synthetic clip, solves it on a ``splatstage serve`` on loopback,
imports the cameras, inserts a GLB product and saves the .blend, which is then reopened in a
fresh Blender process and checked: one camera key per frame on every channel, the footage
as camera background, and the product at its requested size standing on the solved ground.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "blender_scripts"))
from bpy_subprocess import REPO, bpy_python, run_script  # noqa: E402

BATCH = REPO / "blender_addon" / "batch.py"
FRAMES = 24


def run_batch(*args, user_dir: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(user_dir))
    env.pop("PYTHONPATH", None)  # batch.py finds the add-on of its own checkout
    return subprocess.run([bpy_python(), str(BATCH), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=user_dir.parent)


def test_missing_video_fails_with_one_line(tmp_path):
    proc = run_batch("--video", tmp_path / "nope.mp4", "--out", tmp_path / "out", user_dir=tmp_path / "u")
    assert proc.returncode == 1
    err = [line for line in proc.stderr.splitlines() if line.startswith("batch: error:")]
    assert len(err) == 1 and "nope.mp4: video not found" in err[0]
    assert not (tmp_path / "out" / "scene.blend").exists()


def test_unreachable_backend_fails_cleanly(tmp_path):
    from test_addon_cameras import write_video
    from conftest import free_port
    video = tmp_path / "clip.mp4"
    write_video(video, 64, 48, 4)
    proc = run_batch("--video", video, "--out", tmp_path / "out", "--backend", f"tcp://127.0.0.1:{free_port()}",
                     "--connect-timeout", "1", user_dir=tmp_path / "u", timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.startswith("batch: error:")]
    assert len(err) == 1 and "camera solve failed" in err[0], proc.stderr
    assert not (tmp_path / "out" / "scene.blend").exists()


@pytest.mark.parametrize("extra, needle", [
    (["--render", "OUT/c.mp4"], "--render needs --product"),
    (["--product", "P", "--render", "OUT/c.avi"], "--render must be a .mp4 file"),
    (["--product", "P", "--render", "OUT/c.mp4", "--at-pixel", "12"], "--at-pixel: pixel must be U,V"),
    (["--product", "P", "--render", "OUT/c.mp4", "--size", "0"], "--size must be positive"),
    (["--size", "0.3"], "--size needs --product"),
    (["--product", "P", "--preview"], "--preview needs --render"),
])
def test_bad_render_options_fail_before_anything_runs(tmp_path, extra, needle):
    """Checked before the camera solve: no backend is needed, nothing is written."""
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not decoded: the options are refused first")
    from conftest import shared_path

    product = shared_path("glb", "products", "WaterBottle.glb")
    extra = [str(product) if a == "P" else a.replace("OUT", str(tmp_path / "out")) for a in extra]
    proc = run_batch("--video", video, "--out", tmp_path / "out", "--backend", "tcp://127.0.0.1:9", *extra,
                     user_dir=tmp_path / "u", timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.startswith("batch: error:")]
    assert len(err) == 1 and needle in err[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_full_batch_run_against_live_backend(tmp_path, handheld_clip):
    from conftest import ServerProcess, shared_path

    product = shared_path("glb", "products", "WaterBottle.glb")
    clip = handheld_clip  # 320x180, FRAMES frames, rendered once for the session
    srv = ServerProcess(tmp_path / "srv", "--cpu-workers", "1", "--root", str(tmp_path),
                        "--root", str(clip["dir"])).start()
    try:
        proc = run_batch("--video", clip["video"], "--product", product, "--size", "0.26", "--axis", "HEIGHT",
                         "--out", tmp_path / "out", "--backend", srv.address, user_dir=tmp_path / "u")
    finally:
        srv.stop()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    blend = Path(proc.stdout.strip().splitlines()[-1])
    assert blend == (tmp_path / "out" / "scene.blend").resolve() and blend.is_file()
    assert (tmp_path / "out" / "solve" / "cameras.json").is_file()
    out = tmp_path / "inspect.json"
    run_script("inspect_blend.py", blend, out, user_dir=tmp_path / "u2")
    r = json.loads(out.read_text())
    assert r["resolution"] == [320, 180]
    assert r["frame_range"] == [1, FRAMES]
    assert abs(r["fps"] - 24.0) < 1e-9
    solve = json.loads((tmp_path / "out" / "solve" / "cameras.json").read_text())
    registered = sum(f.get("registered", True) for f in solve["frames"])
    assert registered >= FRAMES * 0.9
    assert set(r["keys"].values()) == {registered}
    assert r["clip"]
    p = r["product"]
    assert abs(p["extent"][2] - 0.26) < 1e-5 * 0.26
    assert abs(p["min_height"]) < 1e-5
    x, y, depth = p["first_frame_ndc"]
    # placed where the first frame's optical axis meets the ground, so it is seen at the
    # principal point (float32 maths: ~1e-6 of the image size)
    first = min((f for f in solve["frames"] if f.get("registered", True)), key=lambda f: f["frame"])
    cx, cy = first["principal_point_px"]
    assert depth > 0
    assert abs(x - cx / 320) < 1e-4 and abs(y - (1 - cy / 180)) < 1e-4, (p["first_frame_ndc"], cx, cy)


def test_batch_render_writes_the_composite(tmp_path):
    """--render after the solve: the composite job reuses the batch's solve, trains a few steps
    and writes the video; the product stands where the ground meets the requested pixel."""
    import cv2
    import numpy as np

    from backend.media.video import iter_frames, probe
    from conftest import ServerProcess

    samples = REPO / "backend" / "samples"
    clip, product = samples / "sample_clip.mp4", samples / "product.glb"
    srv = ServerProcess(tmp_path / "srv", "--root", str(samples), "--root", str(tmp_path)).start()
    try:
        proc = run_batch("--video", clip, "--product", product, "--out", tmp_path / "out", "--backend", srv.address,
                         "--render", tmp_path / "out" / "c.mp4", "--preview", "--steps", "5", "--max-frames", "2",
                         "--at-pixel", "300,200", user_dir=tmp_path / "u")
    finally:
        srv.stop()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    blend, video = (Path(x) for x in proc.stdout.strip().splitlines()[-2:])
    assert blend == (tmp_path / "out" / "scene.blend").resolve() and blend.is_file()
    assert video == (tmp_path / "out" / "c.mp4").resolve()
    info = probe(video)
    assert (info.width, info.height, info.frame_count) == (240, 136, 2)
    frame = next(iter_frames(video))[2][:135].astype(int)
    footage = cv2.resize(next(iter_frames(clip))[2], (240, 135), interpolation=cv2.INTER_AREA).astype(int)
    changed = (np.abs(frame - footage).max(2) > 40).astype(np.uint8)
    n, _, stats, centres = cv2.connectedComponentsWithStats(changed, connectivity=8)
    assert n > 1
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    # the anchor is the solved ground under pixel (300, 200) of frame 0, i.e. (150, 100) at this
    # 50 % render whatever the solve's scale: the bottle (a few px wide) is centred on that
    # column and its base (or contact shadow) reaches that row, within 2 px (quantisation and
    # anti-aliased edges)
    x, y, w, h, _ = stats[big]
    assert abs(centres[big][0] - 150) <= w / 2 + 1, (centres[big], w)
    ys, xs = np.nonzero(changed)
    near = np.abs(xs - 150) <= w / 2 + 1
    assert abs(ys[near].max() - 100) <= 2, ys[near].max()
