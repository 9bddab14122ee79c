"""A real server on loopback in a subprocess: handshake, jobs, cancel, crashes, reconnect,
cache, restart, confinement of input paths, CURVE and admin-only shutdown.

Every test that starts a server runs twice: with local worker processes and with its jobs on
the session's Ray cluster (``executor``; ``ray_cluster`` in conftest.py)."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from shared_protocol.client import BackendError, Client
from shared_protocol.wire import Message
from tests.conftest import REPO, ServerProcess, free_port


@pytest.fixture
def server(tmp_path, executor):
    srv = ServerProcess(tmp_path, "--gpu-workers", "2", "--cpu-workers", "2", *executor).start()
    yield srv
    srv.stop()


def test_handshake_reports_server_and_kinds(server):
    from backend.server.server import detect_device

    c = server.client()
    w = c.welcome
    device, memory = detect_device()  # what this host has: ("cpu", None) without nvidia-smi
    assert w["protocol_version"] == "1.0" and (w["device"], w["gpu_memory_gb"]) == (device, memory)
    assert "sleep" in w["kinds"]
    assert 0 < c.ping() < 1.0


def test_major_version_mismatch_is_refused_with_a_clear_error(server):
    c = server.client()
    msg = Message("hello", {"client": "old"}, protocol="2.0")
    with pytest.raises(BackendError) as info:
        c.request(msg, timeout=5)
    assert info.value.code == "version_mismatch" and "2.0" in info.value.message
    assert c.ping() > 0  # the server keeps serving


def test_submit_streams_progress_and_returns_files_and_arrays(server, tmp_path):
    c = server.client()
    job = c.submit("sleep", {"seconds": 0.5, "steps": 5})
    fractions = []
    result = c.wait(job, timeout=30, on_progress=lambda p: fractions.append(p["fraction"]))
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 5
    assert [f["name"] for f in result.content["files"]] == ["slept.txt"]
    np.testing.assert_array_equal(result.arrays["steps"], np.arange(5))
    dest = c.fetch_file(job, "slept.txt", tmp_path / "got" / "slept.txt")
    assert dest.read_text() == "0.5\n"


def test_bad_params_and_unknown_kind_are_errors_not_crashes(server):
    c = server.client()
    with pytest.raises(BackendError) as info:
        c.submit("no-such-kind", {})
    assert info.value.code == "unknown_kind"
    job = c.submit("sleep", {"seconds": -1})
    with pytest.raises(BackendError) as info:
        c.wait(job, timeout=30)
    assert info.value.code == "bad_params" and "seconds" in info.value.message


def test_a_request_that_does_not_validate_is_answered_with_an_error(server):
    """A well-formed message whose content is out of range gets an error reply to it at once,
    not silence until the client's timeout."""
    c = server.client()
    t = time.monotonic()
    with pytest.raises(BackendError) as info:
        c.request(Message("list_jobs", {"limit": 20000}), timeout=10)
    assert info.value.code == "bad_message" and "limit" in info.value.message
    assert time.monotonic() - t < 5
    assert c.jobs(limit=5) is not None  # the connection still serves


def test_cancel_stops_a_running_job_within_two_seconds(server):
    c = server.client()
    job = c.submit("sleep", {"seconds": 60, "steps": 600})
    for msg in c.events(job, timeout=30):
        if msg.type == "progress" and msg.content["stage"] == "sleep":
            break
    t0 = time.monotonic()
    c.cancel(job)
    with pytest.raises(BackendError) as info:
        c.wait(job, timeout=10)
    assert info.value.code == "cancelled"
    assert time.monotonic() - t0 < 2.0
    assert c.status(job)["state"] == "cancelled"
    assert not (server.cache / "jobs" / job / "out").exists()


@pytest.mark.parametrize("how, code, text", [
    ("raise", "internal", "failed on purpose"),
    ("exit", "job_crashed", "exit code 3"),
    ("segfault", "job_crashed", "SIGSEGV"),
])
def test_a_crashing_job_fails_alone_and_the_server_keeps_serving(server, executor, how, code, text):
    c = server.client()
    job = c.submit("sleep", {"seconds": 0.2, "steps": 4, "fail": how})
    with pytest.raises(BackendError) as info:
        c.wait(job, timeout=30)
    if executor and code == "job_crashed":  # Ray reports a dead worker without its exit status
        text = "sleep worker process died on Ray node"
    assert info.value.code == code and text in info.value.message
    assert c.status(job)["state"] == "failed"
    ok = c.submit("sleep", {"seconds": 0.1, "steps": 2})
    assert c.wait(ok, timeout=30).content["state"] == "done"


def test_a_vanished_client_does_not_kill_its_job_and_results_are_fetched_after_reconnect(server):
    c = server.client()
    job = c.submit("sleep", {"seconds": 1.0, "steps": 5})
    c.close()  # the client disappears mid-job
    time.sleep(1.5)
    c2 = server.client()
    for msg in c2.events(job, timeout=30):
        pass
    assert msg.type == "result" and msg.content["summary"]["seconds"] == 1.0


def test_client_reconnects_when_the_server_restarts(tmp_path, executor):
    srv = ServerProcess(tmp_path, *executor).start()
    try:
        c = srv.client()
        job = c.submit("sleep", {"seconds": 0.2, "steps": 2})
        c.wait(job, timeout=30)
        srv.stop()
        srv.start()
        # the same client object recovers: reconnect() handshakes again with backoff
        c.reconnect()
        assert c.fetch(job).content["summary"]["steps"] == 2
    finally:
        srv.stop()


def test_repeated_request_is_answered_from_the_cache_and_survives_restart(tmp_path, executor):
    srv = ServerProcess(tmp_path, *executor).start()
    try:
        c = srv.client()
        params = {"seconds": 0.5, "steps": 2}
        first = c.submit("sleep", params)
        c.wait(first, timeout=30)
        srv.stop()
        srv.start()
        c = srv.client()
        t0 = time.monotonic()
        again = c.submit("sleep", params)
        assert again == first and c.last_accepted["cached"] is True
        result = c.wait(again, timeout=5)
        assert time.monotonic() - t0 < 0.4 and result.content["summary"]["seconds"] == 0.5
        other = c.submit("sleep", {"seconds": 0.1, "steps": 2})
        assert other != first and c.last_accepted["cached"] is False
    finally:
        srv.stop()


def test_input_paths_are_confined_to_roots(server, tmp_path):
    c = server.client()
    inside = server.root / "clip.mp4"
    inside.write_bytes(b"not really a video")
    outside = tmp_path / "secret.txt"
    outside.write_text("x")
    (server.root / "link").symlink_to(outside)
    from backend.fileutil import PathNotAllowed, confine

    assert confine(str(inside), [server.root]) == inside.resolve()
    for bad in (str(outside), str(server.root / ".." / "secret.txt"), str(server.root / "link")):
        with pytest.raises(PathNotAllowed):
            confine(bad, [server.root])
    # through the server, with a kind that takes paths: confinement comes before anything else
    assert "poses" in c.welcome["kinds"]
    for bad in (server.root / "link", outside, server.root / ".." / "secret.txt"):
        with pytest.raises(BackendError) as info:
            c.submit("poses", {"input": str(bad)})
        assert info.value.code == "path_not_allowed", bad


def test_oversize_messages_are_refused_and_the_server_survives(tmp_path, executor):
    srv = ServerProcess(tmp_path, "--max-message-mib", "1", *executor).start()
    try:
        c = srv.client(timeout=2)
        with pytest.raises(BackendError):
            c.submit("sleep", {"seconds": 0}, arrays={"blob": np.zeros(2 << 20, np.uint8)})
        c2 = srv.client()
        assert c2.ping() > 0
    finally:
        srv.stop()


def test_submitted_arrays_reach_the_job_folder(server):
    c = server.client()
    cams = np.eye(4)[None].repeat(3, 0)
    job = c.submit("sleep", {"seconds": 0, "steps": 1}, arrays={"cameras": cams})
    c.wait(job, timeout=30)
    saved = np.load(server.cache / "jobs" / job / "inputs" / "cameras.npy")
    np.testing.assert_array_equal(saved, cams)


def test_non_loopback_bind_needs_curve(tmp_path, executor):
    out = subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--bind", "tcp://0.0.0.0:0",
                          "--cache", str(tmp_path), *executor], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "CURVE" in out.stderr


def test_curve_encrypted_server_accepts_only_authorised_clients(tmp_path, executor):
    from backend.server.security import generate_keys, load_keys

    server_pub, server_secret = generate_keys(tmp_path / "server", "server")
    client_pub, client_secret = generate_keys(tmp_path / "clients", "artist")
    (tmp_path / "clients" / "artist.key_secret").rename(tmp_path / "artist.key_secret")
    srv = ServerProcess(tmp_path, "--curve-secret", str(server_secret), "--curve-clients",
                        str(tmp_path / "clients"), *executor)
    port = free_port()
    srv.port, srv.address = port, f"tcp://127.0.0.1:{port}"
    srv.proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--bind", srv.address, "--cache",
                                 str(srv.cache), "--root", str(srv.root), *srv.extra], cwd=REPO)
    try:
        server_key = load_keys(server_pub)[0]
        keys = load_keys(tmp_path / "artist.key_secret")
        c = Client(srv.address, server_public_key=server_key, client_keys=keys, timeout=20)
        from backend.server.server import detect_device

        assert c.connect()["device"] == detect_device()[0]
        stranger = Client(srv.address, server_public_key=server_key, timeout=1.5)  # random, unauthorised keys
        with pytest.raises(BackendError):
            stranger.connect()
        plain = Client(srv.address, timeout=1.5)
        with pytest.raises(BackendError):
            plain.connect()
    finally:
        srv.stop()


def test_shutdown_requires_the_admin_token(tmp_path, executor):
    srv = ServerProcess(tmp_path, *executor).start()
    try:
        c = srv.client()
        with pytest.raises(BackendError) as info:
            c.shutdown("guess")
        assert info.value.code == "forbidden"
        token = (srv.cache / "admin.token").read_text()
        assert oct((srv.cache / "admin.token").stat().st_mode & 0o777) == "0o600"
        c.shutdown(token)
        assert srv.proc.wait(10) == 0
    finally:
        srv.stop()


def test_client_refuses_a_server_of_another_major_version():
    import threading

    import zmq

    from shared_protocol.wire import decode, encode

    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def fake_server():
        ident, *frames = router.recv_multipart()
        hello = decode(frames)
        welcome = Message("welcome", {"server_version": "9.0", "device": "cpu", "kinds": {},
                                      "max_message_bytes": 1 << 20}, parent=hello.msg_id, protocol="2.0")
        router.send_multipart([ident, *encode(welcome)])

    t = threading.Thread(target=fake_server)
    t.start()
    try:
        with pytest.raises(BackendError) as info:
            Client(f"tcp://127.0.0.1:{port}", timeout=5).connect()
        assert info.value.code == "version_mismatch" and "2.0" in info.value.message
    finally:
        t.join(5)
        router.close(0)
