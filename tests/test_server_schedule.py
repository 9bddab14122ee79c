"""The job scheduler: a job on N GPUs takes N GPU units; one needing more than the server has
runs alone; jobs of a slot start in the order they came."""
import pytest

from backend.server.server import Running, Server, ServerConfig, job_units
from backend.server.store import JobRecord


@pytest.fixture
def make_server(tmp_path):
    servers = []

    def make(gpu_workers):
        srv = Server(ServerConfig(bind="tcp://127.0.0.1:0", cache_dir=tmp_path / f"c{len(servers)}",
                                  roots=[tmp_path], gpu_workers=gpu_workers, cpu_workers=1))
        started = []

        def start(rec, slot, units=1):
            started.append((rec.job_id, units))
            srv.running[rec.job_id] = Running(rec, None, slot, units=units)

        srv._start = start
        srv.started = started
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.running.clear()
        srv.close()


def _queue(srv, job_id, gpus):
    rec = JobRecord(job_id=job_id, kind="reconstruct", params={"gpus": gpus}, cache_key=job_id)
    srv.store.jobs[job_id] = rec
    srv.queue.append(job_id)


def test_job_units_reads_gpus_and_defaults_to_one():
    assert job_units({}) == 1 and job_units({"gpus": 4}) == 4
    assert job_units({"gpus": 0}) == 1 and job_units({"gpus": "x"}) == 1 and job_units({"gpus": float("inf")}) == 1


def test_multi_gpu_job_waits_for_its_units_and_keeps_its_place(make_server):
    srv = make_server(gpu_workers=2)
    _queue(srv, "a", 1)
    _queue(srv, "b", 2)
    _queue(srv, "c", 1)
    srv._schedule()
    # a takes one of two units; b needs two and waits; c, behind b, waits too
    assert srv.started == [("a", 1)] and list(srv.queue) == ["b", "c"]
    del srv.running["a"]
    srv._schedule()
    assert srv.started[-1] == ("b", 2) and list(srv.queue) == ["c"]
    del srv.running["b"]
    srv._schedule()
    assert srv.started[-1] == ("c", 1) and not srv.queue


def test_job_wider_than_the_server_runs_alone(make_server):
    srv = make_server(gpu_workers=1)
    _queue(srv, "wide", 2)
    _queue(srv, "next", 1)
    srv._schedule()
    assert srv.started == [("wide", 2)] and list(srv.queue) == ["next"]
    del srv.running["wide"]
    srv._schedule()
    assert srv.started[-1] == ("next", 1)
