"""A Ray node that dies mid-job: the job runs again on another node, a reconstruction from its
last checkpoint, at most ``--ray-retries`` times; then it fails with a clear error, and nothing
half-written is ever published.

Two nodes join the session's Ray cluster (``ray_cluster`` in conftest.py), each with one unit
of a custom resource standing in for a GPU that only they have; a job server in a subprocess
(``serve --ray ADDRESS --ray-gpu-resource failover_gpu --ray-retries 1``) sends its
reconstruction to one of them, and the test kills that node (``Cluster.remove_node``: its
raylet and worker processes are killed at once, as when a host loses power).

Determinism: CPU training with one thread is a fixed sequence of floating-point operations, and
a checkpoint holds all the state a step reads (the Gaussians, Adam's moments, the densification
statistics, torch's RNG; the frame order is a function of seed and step). A resumed run therefore
repeats the uninterrupted run's arithmetic exactly, so its splats must equal the uninterrupted
run's bit for bit; the test allows a few units in the last place of float32 (rtol 1e-6), no more.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from backend.server.launch import ServerProcess
from shared_protocol.client import BackendError

UNIT = "failover_gpu"
STEPS, EVERY = 120, 20


@pytest.fixture(scope="module")
def solve_dir(tmp_path_factory) -> Path:
    """A 12-frame 64x48 orbit clip rendered with bpy and its true-camera solve."""
    from backend.pipelines.reconstruct.synthetic_solve import solve_from_clip
    from backend.synthetic import make_clip

    root = tmp_path_factory.mktemp("failover") / "root"
    make_clip(root / "clip", path="orbit", width=64, height=48, frames=12, samples=4, video=False, seed=3,
              timeout=300)
    return solve_from_clip(root / "clip", root / "solve", n_points=800, noise=0.005, seed=0)


def _params(solve_dir: Path, seed: int = 0, steps: int = STEPS) -> dict:
    return {"solve_dir": str(solve_dir), "device": "cpu", "threads": 1, "steps": steps, "sh_degree": 1,
            "checkpoint_every": EVERY, "max_size": 64, "seed": seed}


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def _kill_node_of(c, job: str, nodes: dict) -> str:
    node_id = _wait(lambda: c.status(job).get("node"), 120, "the job starting on a node")
    nodes[node_id]["cluster"].remove_node(nodes.pop(node_id)["node"], allow_graceful=False)
    return node_id


def _left_in(job_dir: Path) -> list[str]:
    return sorted(p.name for p in job_dir.iterdir() if p.name in ("out", "arrays") or p.name.endswith(".partial"))


def test_a_reconstruction_whose_node_dies_resumes_on_another_node_then_gives_up(ray_cluster, solve_dir, tmp_path):
    cl = ray_cluster.cluster
    nodes = {}
    for _ in range(2):
        n = cl.add_node(num_cpus=0, resources={UNIT: 1}, node_ip_address="127.0.0.1")
        nodes[n.node_id] = {"cluster": cl, "node": n}
    cl.wait_for_nodes()
    root = solve_dir.parent
    srv = ServerProcess(tmp_path / "ray", "--ray", ray_cluster.address, "--ray-gpu-resource", UNIT,
                        "--ray-retries", "1", "--root", str(root)).start()
    local = ServerProcess(tmp_path / "local", "--root", str(root)).start()
    try:
        c = srv.client(timeout=30)
        job = c.submit("reconstruct", _params(solve_dir))
        steps_seen = []
        killed = []

        def on_progress(p):
            step = (p.get("extra") or {}).get("step")
            if step:
                steps_seen.append(step)
            if not killed and step and step > 2 * EVERY:  # two checkpoints written, the third not yet
                killed.append((_kill_node_of(c, job, nodes), step))

        msg = c.wait(job, timeout=300, on_progress=on_progress)
        assert killed, "the training ended before a node was killed: make it longer"
        lost, step_at_kill = killed[0]
        info = c.status(job)
        survivor = next(iter(nodes))
        assert info["state"] == "done" and info["retries"] == 1 and info["node"] == survivor != lost
        summary = msg.content["summary"]
        resumed = summary["resumed_from_step"]
        # resumed from its last checkpoint: at least the last one written before the kill was seen
        assert resumed % EVERY == 0 and resumed >= EVERY * (step_at_kill // EVERY) >= 2 * EVERY
        # fewer steps trained again than had been completed: only those after the checkpoint
        assert summary["steps_trained"] == STEPS - resumed < STEPS
        assert _left_in(srv.cache / "jobs" / job) == ["arrays", "out"]

        lc = local.client(timeout=30)
        full = lc.wait(lc.submit("reconstruct", _params(solve_dir)), timeout=300)
        assert full.content["summary"]["resumed_from_step"] == 0
        assert full.content["summary"]["steps_trained"] == STEPS
        assert msg.arrays.keys() == full.arrays.keys() and "positions" in msg.arrays
        for name in msg.arrays:
            np.testing.assert_allclose(np.array(msg.arrays[name]), np.array(full.arrays[name]), rtol=1e-6, atol=0,
                                       err_msg=name)
        assert summary["num_gaussians"] == full.content["summary"]["num_gaussians"]
        lc.close()

        # At most --ray-retries times: a job whose node dies twice fails, naming both nodes.
        third = cl.add_node(num_cpus=0, resources={UNIT: 1}, node_ip_address="127.0.0.1")
        nodes[third.node_id] = {"cluster": cl, "node": third}
        cl.wait_for_nodes()
        job2 = c.submit("reconstruct", _params(solve_dir, seed=1, steps=5000))
        first = _kill_node_of(c, job2, nodes)
        _wait(lambda: c.status(job2).get("retries") == 1 and c.status(job2).get("node"), 120,
              "the retry starting on the other node")
        second = _kill_node_of(c, job2, nodes)
        with pytest.raises(BackendError) as failed:
            c.wait(job2, timeout=120)
        assert failed.value.code == "job_crashed"
        assert "died 2 times" in failed.value.message and "gave up after 1 retry" in failed.value.message
        assert first[:12] in failed.value.message and second[:12] in failed.value.message
        assert c.status(job2)["state"] == "failed" and _left_in(srv.cache / "jobs" / job2) == []
        manifest = json.loads((srv.cache / "jobs" / job2 / "manifest.json").read_text())
        assert manifest["retries"] == 1 and manifest["files"] == []

        # A lost node that no live node can stand in for: the job fails at once, saying so.
        last = cl.add_node(num_cpus=0, resources={UNIT: 1}, node_ip_address="127.0.0.1")
        nodes[last.node_id] = {"cluster": cl, "node": last}
        cl.wait_for_nodes()
        job3 = c.submit("reconstruct", _params(solve_dir, seed=2, steps=5000))
        _kill_node_of(c, job3, nodes)
        with pytest.raises(BackendError) as failed:
            c.wait(job3, timeout=60)
        assert failed.value.code == "job_crashed"
        assert f"no live node has 1 {UNIT} to run it again" in failed.value.message
        c.close()
    finally:
        for entry in nodes.values():
            cl.remove_node(entry["node"])
        srv.stop()
        local.stop()
