"""``splatstage poses ... --backend``: submit to a live server on loopback, wait, fetch the files and
publish them, and get what the same command writes in-process."""
from __future__ import annotations

import json
import math

import numpy as np

from backend.cli import main as cli
from backend.evaluation import raycast_scene
from backend.evaluation.pose_metrics import rotation_angle_deg
from shared_protocol import camera_file

W, H, F = 320, 180, 280.0


def test_poses_through_a_live_server_matches_the_in_process_run(server, tmp_path, capsys):
    clip = server.root / "clip"  # inside the server's --root
    raycast_scene.write_clip(clip, raycast_scene.handheld_path(16, seed=5), F, W, H)
    args = ["poses", str(clip / "clip.mp4"), "--threads", "2", "--scale-cameras", "0", "15", "--scale-distance", "1"]
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert cli([*args, "-o", str(local)]) == 0
    local_out = capsys.readouterr().out
    assert cli([*args, "-o", str(remote), "--backend", server.address]) == 0
    remote_out = capsys.readouterr().out

    # the server ran it: one poses job, done, and the CLI fetched every file it lists
    jobs = [j for j in server.client().jobs() if j["kind"] == "poses"]
    assert len(jobs) == 1 and jobs[0]["state"] == "done", jobs
    names = sorted(str(p.relative_to(remote)) for p in remote.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert "cameras.json" in names and "points.ply" in names
    assert not list(tmp_path.glob(".*partial*")), "the download folder is removed after publishing"
    # the summary printed is the job's summary
    pick = lambda text: [ln for ln in text.splitlines() if ln.startswith(("  n_registered", "  scale_source"))]  # noqa: E731
    assert pick(remote_out) == pick(local_out) and pick(remote_out)

    # the same solve. Camera motion (each camera relative to the first: free of the world frame)
    # agrees far below a pixel: 1 px is 1/f rad, and a camera offset of (scene depth ~3 m) / f
    # moves the scene by 1 px (the scale is fixed: cameras 0 and 15 are 1 apart in both).
    a, b = camera_file.read(local / "cameras.json"), camera_file.read(remote / "cameras.json")
    assert [f["source"] for f in a["frames"]] == [f["source"] for f in b["frames"]]
    ma, mb = camera_file.matrices(a), camera_file.matrices(b)
    ra, rb = np.linalg.inv(ma[0]) @ ma, np.linalg.inv(mb[0]) @ mb
    rot = max(rotation_angle_deg(x[:3, :3].T @ y[:3, :3]) for x, y in zip(ra, rb))
    assert rot < 0.01 * math.degrees(1.0 / F), rot
    assert np.abs(ra[:, :3, 3] - rb[:, :3, 3]).max() < 0.01 * 3.0 / F
    assert abs(a["frames"][0]["focal_px"] - b["frames"][0]["focal_px"]) < 0.01
    # The world frame comes from the RANSAC ground-plane fit on the sparse points, which differs
    # between any two runs of the solve by up to half a pixel of camera rotation: within 1 px.
    rot = max(rotation_angle_deg(x[:3, :3].T @ y[:3, :3]) for x, y in zip(ma, mb))
    assert rot < math.degrees(1.0 / F), rot
    assert json.loads((remote / "cameras.json").read_text())["width"] == W
