"""The job server with its jobs on a real Ray cluster on this host (``serve --ray``).

The session's cluster (``ray_cluster`` in conftest.py: ``ray.cluster_utils.Cluster``, every
process on 127.0.0.1): a head without CPUs (the server's node), a "GPU" node with two units of
a custom resource standing in for GPUs and no CPUs, and a CPU node with two CPUs. So CPU jobs
can only run on the CPU node and GPU jobs only on the GPU node, which the ``node`` field in the
job's info must show (a composite, which needs both, only on a node added with both). The same
jobs also run on a server with local worker processes, and their results must match.
"""
import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray keeps 127.0.0.1 addresses as they are

import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import ray  # noqa: E402,F401 (in the test extra: pip install -e '.[test]')

from backend.server.executor_ray import job_resources  # noqa: E402
from backend.server.server import CANCEL_GRACE_S, Server, ServerConfig  # noqa: E402
from shared_protocol.client import BackendError, Client  # noqa: E402

from tests.conftest import RAY_GPU as GPU  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "backend" / "samples"


class ThreadServer:
    """A Server whose main loop runs in a thread of the test process."""

    def __init__(self, config: ServerConfig):
        self.server = Server(config)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def client(self) -> Client:
        c = Client(self.server.endpoint, timeout=20.0)
        c.connect()
        return c

    def stop(self) -> None:
        self.server.stopping = True
        self.thread.join(60)


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    return {"address": ray_cluster.address, "gpu": ray_cluster.gpu, "cpu": ray_cluster.cpu}


@pytest.fixture(scope="module")
def servers(cluster, tmp_path_factory):
    from backend.runner import run_job

    tmp = tmp_path_factory.mktemp("ray")
    root = tmp / "root"
    root.mkdir()
    # a small real camera solve, the input of the tiny real jobs (``scale``) below
    run_job("poses", {"input": str(SAMPLES / "sample_clip.mp4"), "stop": 8, "max_size": 160, "threads": 1},
            root / "solve")
    on_ray = ThreadServer(ServerConfig(bind="tcp://127.0.0.1:0", cache_dir=tmp / "cache-ray", roots=[root, SAMPLES],
                                       ray_address=cluster["address"], ray_gpu_resource=GPU))
    local = ThreadServer(ServerConfig(bind="tcp://127.0.0.1:0", cache_dir=tmp / "cache-local", roots=[root, SAMPLES],
                                      cpu_workers=2))
    yield {"ray": on_ray, "local": local, "root": root}
    on_ray.stop()
    local.stop()


def test_each_kind_asks_ray_for_the_resources_of_its_stages():
    assert job_resources("poses", {}) == {"num_cpus": 1.0, "num_gpus": 0}
    assert job_resources("sleep", {}, job_cpus=4) == {"num_cpus": 4, "num_gpus": 0}
    assert job_resources("reconstruct", {"gpus": 2}) == {"num_cpus": 0, "num_gpus": 2}
    assert job_resources("render", {}) == {"num_cpus": 0, "num_gpus": 1}
    assert job_resources("stereo", {}, gpu_resource=GPU) == {"num_cpus": 0, "resources": {GPU: 1}}
    assert job_resources("composite", {"gpus": 3}, job_cpus=2) == {"num_cpus": 2, "num_gpus": 3}
    assert job_resources("poses", {}, gpu_resource=GPU) == {"num_cpus": 1.0}
    # a CPU-only cluster: GPU kinds take CPUs; a composite's stages run in turn, so the larger count
    assert job_resources("reconstruct", {"gpus": 2}, gpu_resource="CPU") == {"num_cpus": 2}
    assert job_resources("render", {}, gpu_resource="CPU") == {"num_cpus": 1}
    assert job_resources("poses", {}, job_cpus=3, gpu_resource="CPU") == {"num_cpus": 3}
    assert job_resources("composite", {"gpus": 1}, job_cpus=2, gpu_resource="CPU") == {"num_cpus": 2}


def _wait_state(c: Client, job: str, state: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = c.status(job)
        if info["state"] == state:
            return info
        time.sleep(0.05)
    raise AssertionError(f"job {job} is {info['state']}, not {state}, after {timeout} s")


def test_jobs_land_on_the_nodes_their_resources_allow(servers, cluster, ray_cluster):
    c = servers["ray"].client()
    cpu_job = c.submit("sleep", {"seconds": 0.5, "steps": 5})
    seen = []
    assert c.wait(cpu_job, timeout=120, on_progress=seen.append).content["state"] == "done"
    assert c.status(cpu_job)["node"] == cluster["cpu"]
    fractions = [p["fraction"] for p in seen]  # progress flows back from the node, in order
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 5
    assert {"start", "sleep"} <= {p["stage"] for p in seen}

    splats = servers["root"] / "scene.ply"
    splats.write_bytes(b"ply\n")
    gpu_job = c.submit("render", {"splats": str(splats), "cameras": str(splats)})
    info = _wait_state(c, gpu_job, "running", 120)
    assert info["node"] == cluster["gpu"]
    c.cancel(gpu_job)
    with pytest.raises(BackendError) as stopped:
        c.wait(gpu_job, timeout=30)
    assert stopped.value.code == "cancelled"

    # Every other kind: each job starts on the node its resources allow (then fails at once on
    # its dummy input; the node it ran on stays in its info).
    root = str(servers["root"])
    for kind, params, node in [("poses", {"input": str(splats)}, "cpu"), ("scale", {"solve": root}, "cpu"),
                               ("reconstruct", {"solve_dir": root, "device": "cpu"}, "gpu"),
                               ("stereo", {"input": str(splats)}, "gpu")]:
        job = c.submit(kind, params)
        with pytest.raises(BackendError):
            c.wait(job, timeout=120)
        assert c.status(job)["node"] == cluster[node], kind

    # Nothing fits: more GPUs than any node has, or a composite's CPU and GPU on one node.
    for kind, params, need in [("reconstruct", {"solve_dir": str(servers["root"]), "gpus": 3}, f"3 {GPU}"),
                               ("composite", {}, f"1 CPU and 1 {GPU}")]:
        job = c.submit(kind, params)
        with pytest.raises(BackendError) as info:
            c.wait(job, timeout=30)
        assert info.value.code == "job_failed" and f"no node of the Ray cluster has {need}" in info.value.message
        assert "node" not in c.status(job)

    # A node with both: the composite lands there.
    both = ray_cluster.cluster.add_node(num_cpus=1, resources={GPU: 1}, node_ip_address="127.0.0.1")
    ray_cluster.cluster.wait_for_nodes()
    try:
        job = c.submit("composite", {"video": str(splats), "product": str(splats)})
        with pytest.raises(BackendError):
            c.wait(job, timeout=120)
        assert c.status(job)["node"] == both.node_id
    finally:
        ray_cluster.cluster.remove_node(both)
    c.close()


def test_concurrent_jobs_from_several_clients_match_local_execution(servers, cluster):
    # 20 jobs: 16 sleeps and 4 re-scalings of a real camera solve (a tiny real kind)
    solve = str(servers["root"] / "solve")
    jobs = [("scale", {"solve": solve, "camera_height": 1.0 + 0.25 * i}) if i % 5 == 4 else
            ("sleep", {"seconds": 0.05 * (i % 3), "steps": 2 + i, "result_mib": 0.01 * i}) for i in range(20)]

    def run_all(server) -> list:
        results = [None] * len(jobs)

        def client_loop(k):  # client k submits jobs k, k+5, ... at once, then waits for each
            c = server.client()
            submitted = [(i, c.submit(*jobs[i])) for i in range(k, len(jobs), 5)]
            for i, job in submitted:
                msg = c.wait(job, timeout=180)
                results[i] = (msg.content["files"], msg.content["summary"],
                              {n: np.array(a) for n, a in msg.arrays.items()}, c.status(job).get("node"))
            c.close()

        threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
        return results

    on_ray, local = run_all(servers["ray"]), run_all(servers["local"])
    assert all(r is not None for r in on_ray + local)
    for (files, summary, arrays, node), (lfiles, lsummary, larrays, lnode) in zip(on_ray, local):
        assert files == lfiles and summary == lsummary and arrays.keys() == larrays.keys()
        for name in arrays:
            np.testing.assert_array_equal(arrays[name], larrays[name])
        assert node == cluster["cpu"] and lnode is None


def test_cancel_of_a_running_job_frees_its_resources_within_the_grace_period(servers, cluster):
    c = servers["ray"].client()
    jobs = [c.submit("sleep", {"seconds": 60, "steps": 600}) for _ in range(2)]  # both CPUs of the CPU node
    for job in jobs:
        _wait_state(c, job, "running", 120)
    waiting = c.submit("sleep", {"seconds": 0.1, "steps": 7})  # parameters no earlier job had
    time.sleep(0.5)
    assert c.status(waiting)["state"] == "queued"  # no CPU free
    dropped = c.submit("sleep", {"seconds": 0.1, "steps": 9})  # also waiting; cancelled before it runs
    c.cancel(dropped)
    with pytest.raises(BackendError) as info:
        c.wait(dropped, timeout=30)
    assert info.value.code == "cancelled" and "node" not in c.status(dropped)
    t0 = time.monotonic()
    c.cancel(jobs[0])
    with pytest.raises(BackendError) as info:
        c.wait(jobs[0], timeout=30)
    assert info.value.code == "cancelled" and time.monotonic() - t0 < CANCEL_GRACE_S + 1.0
    cache = servers["ray"].server.cache_dir
    assert not (cache / "jobs" / jobs[0] / "out").exists()
    # The task's end (its result ref resolved: the cancelled event above) returns its CPU to Ray,
    # which gives it to the waiting job (a fresh worker process); the other job runs on.
    t_cancel = time.time() - (time.monotonic() - t0)
    assert c.wait(waiting, timeout=60).content["state"] == "done"
    assert c.status(waiting)["started"] > t_cancel and c.status(waiting)["node"] == cluster["cpu"]
    assert c.status(jobs[1])["state"] == "running"
    c.cancel(jobs[1])
    with pytest.raises(BackendError):
        c.wait(jobs[1], timeout=30)
    c.close()


@pytest.mark.parametrize("how, code, text", [("raise", "internal", "failed on purpose"),
                                             ("segfault", "job_crashed", "worker process died")])
def test_a_crashing_job_fails_alone_on_its_node(servers, cluster, how, code, text):
    c = servers["ray"].client()
    job = c.submit("sleep", {"seconds": 0.2, "steps": 4, "fail": how})
    with pytest.raises(BackendError) as info:
        c.wait(job, timeout=120)
    assert info.value.code == code and text in info.value.message
    assert c.status(job)["state"] == "failed"
    ok = c.submit("sleep", {"seconds": 0.1, "steps": 3, "result_mib": 0.5})
    assert c.wait(ok, timeout=120).content["state"] == "done"
    c.close()


def test_a_camera_solve_on_the_cluster_equals_the_local_one(servers, cluster, tmp_path):
    import json

    params = {"input": str(SAMPLES / "sample_clip.mp4"), "stop": 12, "max_size": 240, "threads": 1}
    out = {}
    for name in ("ray", "local"):
        c = servers[name].client()
        job = c.submit("poses", params)
        msg = c.wait(job, timeout=300)
        files = {f["name"]: f for f in msg.content["files"]}
        for f in files:
            c.fetch_file(job, f, tmp_path / name / f)
        out[name] = (files, {n: np.array(a) for n, a in msg.arrays.items()}, c.status(job).get("node"))
        c.close()
    (files, arrays, node), (lfiles, larrays, lnode) = out["ray"], out["local"]
    assert "cameras.json" in files and files.keys() == lfiles.keys() and arrays.keys() == larrays.keys()
    for name in files:
        if name == "cameras.json":  # identical cameras; its stats hold run times and fit diagnostics
            # whose last digits follow the BLAS thread count (Ray gives a task OMP_NUM_THREADS = its CPUs)
            solved = [json.loads((tmp_path / where / name).read_text()) for where in ("ray", "local")]
            stats = [s.pop("stats") for s in solved]
            assert solved[0] == solved[1] and stats[0].keys() == stats[1].keys()
        else:
            assert files[name]["sha256"] == lfiles[name]["sha256"], name
    for name in arrays:
        np.testing.assert_array_equal(arrays[name], larrays[name])
    assert node == cluster["cpu"] and lnode is None
