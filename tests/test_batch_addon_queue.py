"""The add-on's *Submit Shot to Queue* (bpy in a subprocess, a job server on loopback): the open
.blend's shot lands in the shots file the batch reads, and its camera solve is on the server
with exactly the parameters the batch gives that shot's solve (so the batch's solve is the same
job: the server answers it from its cache). A scene without a product writes and submits
nothing."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from backend.server.launch import ServerProcess
from shared_protocol.shots import load_shots, stage_params

sys.path.insert(0, str(Path(__file__).resolve().parent / "blender_scripts"))
from bpy_subprocess import run_script  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "backend" / "samples"


def test_submit_shot_to_queue_writes_the_entry_and_queues_its_solve(tmp_path):
    srv = ServerProcess(tmp_path / "srv", "--root", str(SAMPLES)).start()
    try:
        queue = srv.root / "queue.json"
        spec = {"video": str(SAMPLES / "sample_clip.mp4"), "product": str(SAMPLES / "product.glb"),
                "queue": str(queue), "bad_queue": str(srv.root / "bad.json"), "address": srv.address,
                "blend": str(srv.root / "sh 010.blend")}
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        run_script("submit_shot.py", tmp_path / "out.json", tmp_path / "spec.json", user_dir=tmp_path / "user")
        r = json.loads((tmp_path / "out.json").read_text())

        assert r["good"] == {"result": ["FINISHED"], "error": ""}
        shots, out = load_shots(queue)
        assert len(shots) == 1 and "error" not in shots[0]
        shot = shots[0]
        assert shot["name"] == "sh_010" and shot["footage"] == spec["video"] and shot["product"] == spec["product"]
        rotate = shot["placement"].pop("rotate")  # Blender keeps the angle in float32 radians: 4e-6 degrees
        assert abs(rotate - 30.0) < 4e-6
        assert shot["placement"] == {"at_frame": 1, "at_pixel": [240.0, 200.0], "product_height": 0.25}
        assert shot["options"] == {"preview": True, "device": "cpu", "frames": 10, "reconstruct": {"steps": 20}}

        c = srv.client()
        jobs = c.jobs()
        assert [j["kind"] for j in jobs] == ["poses"]
        manifest = json.loads((srv.cache / "jobs" / jobs[0]["job_id"] / "manifest.json").read_text())
        assert manifest["params"] == stage_params(shot, "poses", out / "sh_010")
        assert manifest["params"] == {"max_size": 240, "input": spec["video"], "stop": 10}

        assert r["no_product"]["result"] == ["CANCELLED"]
        assert "product (a file path) is required" in r["no_product"]["error"]
        assert not Path(spec["bad_queue"]).exists()
        time.sleep(0.2)
        assert len(c.jobs()) == 1
        c.close()
    finally:
        srv.stop()
