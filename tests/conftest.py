"""Shared fixtures: a live job server on loopback in a subprocess."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.server.launch import ServerProcess, free_port  # noqa: F401 (fixtures and tests use them)

REPO = Path(__file__).resolve().parents[1]
# Real test data (see its README.md): ../shared/data beside the checkout, or $SPLATSTAGE_SHARED_DATA.
SHARED_DATA = Path(os.environ.get("SPLATSTAGE_SHARED_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path, "--gpu-workers", "2", "--cpu-workers", "2").start()
    yield srv
    srv.stop()


def _missing(path: Path) -> str:
    return (f"test data {path} is missing: the shared data folder {SHARED_DATA} is not here "
            "(../shared/data beside the checkout, or set SPLATSTAGE_SHARED_DATA)")


def shared_path(*parts: str) -> Path:
    """A file or folder of the shared test data; skips the calling test, naming it, when absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(_missing(path))
    return path


def needs_shared_data(*parts: str) -> pytest.MarkDecorator:
    """Marker form of shared_path(), for tests or modules that read the data at collection time."""
    path = SHARED_DATA.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=_missing(path))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_path()


@pytest.fixture(scope="session")
def handheld_clip(tmp_path_factory) -> dict[str, Path]:
    """A Cycles-rendered hand-held clip with its true cameras (``backend.synthetic.make_clip``:
    320x180, 24 frames, 2 samples, seed 11), rendered once per session for every test that needs
    a real render (camera solve, batch, reconstruction); tests read it and never change it."""
    from backend.synthetic import make_clip

    return make_clip(tmp_path_factory.mktemp("handheld") / "clip", path="handheld", width=320, height=180,
                     frames=24, samples=2, seed=11, timeout=600)


#: The custom Ray resource that stands for a GPU on the session's Ray cluster (``ray_cluster``).
RAY_GPU = "gpu_stand_in"


@pytest.fixture(scope="session")
def ray_cluster():
    """One real Ray cluster on this host for the whole session (``ray.cluster_utils.Cluster``,
    every process on 127.0.0.1): a head without CPUs, a "GPU" node with two units of
    ``RAY_GPU`` and no CPUs, and a CPU node with two CPUs. Servers attach to it with
    ``--ray ADDRESS --ray-gpu-resource gpu_stand_in``; tests may add nodes and must remove them."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray keeps 127.0.0.1 addresses as they are
    from types import SimpleNamespace

    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1",
                                                      "include_dashboard": False})
    gpu = c.add_node(num_cpus=0, resources={RAY_GPU: 2}, node_ip_address="127.0.0.1")
    cpu = c.add_node(num_cpus=2, node_ip_address="127.0.0.1")
    c.wait_for_nodes()
    yield SimpleNamespace(cluster=c, address=c.address, gpu=gpu.node_id, cpu=cpu.node_id,
                          server_args=("--ray", c.address, "--ray-gpu-resource", RAY_GPU))
    import ray

    ray.shutdown()  # a driver in this process (a server's thread) must let go before the head stops
    c.shutdown()


@pytest.fixture(params=["local", "ray"])
def executor(request) -> tuple[str, ...]:
    """The ``serve`` arguments of each executor, for tests that run once with each: none (local
    worker processes), or ``--ray`` on the session's Ray cluster."""
    return request.getfixturevalue("ray_cluster").server_args if request.param == "ray" else ()


def pytest_runtest_setup(item):
    """Every ``gpu`` test skips cleanly where torch sees no CUDA device (scripts/gpu_check.sh runs them)."""
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("gpu test: torch sees no CUDA device")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


os.environ.setdefault("PYTHONUNBUFFERED", "1")
