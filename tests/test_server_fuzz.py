"""Malformed traffic and load against a live server, with local worker processes and with its
jobs on the session's Ray cluster (``ray_cluster`` in conftest.py).

With Ray the load is smaller: every valid-shaped message is a job, and each job on Ray gets a
fresh worker process (about a second on a 2-core CI machine), so the full load (over a thousand
jobs) would take many minutes there. The server's front door, which the malformed messages
test, is the same code with either executor."""
import json
import random
import threading
import time

import pytest
import zmq

from shared_protocol.client import BackendError
from tests.conftest import ServerProcess, rss_kib


@pytest.fixture
def server(tmp_path, executor):
    srv = ServerProcess(tmp_path, "--gpu-workers", "2", "--cpu-workers", "2", *executor).start()
    yield srv
    srv.stop()


def malformed_messages(rng: random.Random, n: int):
    good = {"protocol": "1.0", "type": "submit", "msg_id": "m1", "job_id": None, "parent": None,
            "content": {"kind": "sleep", "params": {"seconds": 0}}, "buffers": []}
    for i in range(n):
        case = i % 10
        if case == 0:  # random bytes, random frame count
            yield [rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(1, 4))]
        elif case == 1:  # valid JSON of the wrong shape
            yield [json.dumps(rng.choice([[], 1, "x", None, True, {"type": []}])).encode()]
        elif case == 2:  # wrong types for each field
            h = dict(good)
            key = rng.choice(list(h))
            h[key] = rng.choice([1, 2.5, [], {}, None, "", "x" * 100, True])
            yield [json.dumps(h).encode()]
        elif case == 3:  # declared sizes that do not match the buffers
            h = dict(good, buffers=[{"name": "a", "dtype": "<f4", "shape": [rng.randint(1, 1000)]}])
            yield [json.dumps(h).encode(), rng.randbytes(rng.randint(0, 100))]
        elif case == 4:  # truncated header
            raw = json.dumps(good).encode()
            yield [raw[: rng.randint(0, len(raw) - 1)]]
        elif case == 5:  # huge declared shapes
            shape = [rng.choice([1 << 30, 1 << 40, 10 ** 6]) for _ in range(rng.randint(1, 8))]
            h = dict(good, buffers=[{"name": "a", "dtype": "<f8", "shape": shape}])
            yield [json.dumps(h).encode(), b"\0" * 8]
        elif case == 6:  # more frames than buffers declared, and the reverse
            h = dict(good, buffers=[{"name": "a", "dtype": "|u1", "shape": [1]}] * rng.randint(0, 3))
            yield [json.dumps(h).encode()] + [b"x"] * rng.randint(0, 5)
        elif case == 7:  # forbidden dtypes
            h = dict(good, buffers=[{"name": "a", "dtype": rng.choice(["|O", "<U4", "V8", "<c8", ">f4", 3]), "shape": [1]}])
            yield [json.dumps(h).encode(), b"x" * 8]
        elif case == 8:  # deep nesting and bad job ids
            yield [(b"[" * 5000) + (b"]" * 5000)]
            yield [json.dumps(dict(good, type="cancel", job_id="../../etc")).encode()]
        else:  # valid shapes with invalid contents
            h = dict(good, content={"kind": "sleep", "params": {"seconds": rng.choice([-1, 1e9, "x", None])}})
            yield [json.dumps(h).encode()]


def blast(address: str, frames_iter, drain: bool = True) -> int:
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(address)
    sent = 0
    for frames in frames_iter:
        s.send_multipart(frames)
        sent += 1
        while drain and s.poll(0):
            s.recv_multipart()
    deadline = time.monotonic() + 3
    while drain and time.monotonic() < deadline and s.poll(200):
        s.recv_multipart()
    s.close(0)
    return sent


def test_ten_thousand_malformed_messages_leave_the_server_healthy(server, executor):
    n = 300 if executor else 10000
    rng = random.Random(1234)
    blast(server.address, malformed_messages(rng, n // 10))  # warm up allocator and caches
    rss_before = rss_kib(server.pid)
    sent = blast(server.address, malformed_messages(rng, n))
    assert sent >= n
    c = server.client()
    assert c.welcome["protocol_version"] == "1.0" and c.ping() > 0
    rss_after = rss_kib(server.pid)
    assert rss_after - rss_before < 32 * 1024, f"server memory grew from {rss_before} KiB to {rss_after} KiB"
    # the valid-shaped submits ran: wait until nothing is queued or running (none is stuck), then
    # every job with a bad 'seconds' (-1, 1e9, "x", None) failed with bad_params and every good
    # one (seconds 0, with or without an array) is done
    deadline = time.monotonic() + 240
    jobs = c.jobs(limit=10000)
    while any(j["state"] in ("queued", "running") for j in jobs):
        assert time.monotonic() < deadline, "jobs still queued or running after 240 s"
        time.sleep(0.5)
        jobs = c.jobs(limit=10000)
    assert len(jobs) < 10000  # all of them listed
    bad = good = 0
    for j in jobs:
        params = json.loads((server.cache / "jobs" / j["job_id"] / "manifest.json").read_text())["params"]
        assert j["kind"] == "sleep" and set(params) <= {"seconds", "input_arrays"}, params
        if params["seconds"] == 0:
            good += 1
            assert j["state"] == "done", j
        else:
            bad += 1
            assert j["state"] == "failed" and j["error"]["code"] == "bad_params", (params, j)
            assert "seconds" in j["error"]["message"], j
    assert bad >= 4 and good >= 1, (bad, good)  # the fuzz reached both


def test_fifty_concurrent_clients_submitting_and_cancelling(server, executor):
    n_clients = 10 if executor else 50
    outcomes: dict[str, str] = {}
    errors = []
    lock = threading.Lock()

    def one(i: int):
        try:
            c = server.client(timeout=30)
            keep = c.submit("sleep", {"seconds": 0.2 + i * 1e-6, "steps": 2})
            drop = c.submit("sleep", {"seconds": 30 + i * 1e-6, "steps": 300})
            c.cancel(drop)
            for job in (keep, drop):
                try:
                    state = c.wait(job, timeout=240).content["state"]
                except BackendError as exc:
                    state = exc.code
                with lock:
                    outcomes[job] = state
            c.close()
        except Exception as exc:  # collected and reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    assert len(outcomes) == 2 * n_clients
    assert sorted(outcomes.values()).count("done") == n_clients
    assert sorted(outcomes.values()).count("cancelled") == n_clients
    server_states = {j["job_id"]: j["state"] for j in server.client().jobs(limit=1000)}
    assert {k: server_states[k] for k in outcomes} == outcomes
