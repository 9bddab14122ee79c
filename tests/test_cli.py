"""The splatstage command line: subcommands, one-line errors, jobs against a live server."""
import subprocess
import sys

from tests.conftest import REPO


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def test_help_lists_every_subcommand():
    out = cli("--help")
    assert out.returncode == 0
    for sub in ("serve", "keys", "poses", "reconstruct", "render", "stereo", "composite", "demo", "jobs"):
        assert sub in out.stdout


def test_keys_writes_a_private_secret_key(tmp_path):
    out = cli("keys", "--dir", str(tmp_path), "--name", "srv")
    assert out.returncode == 0
    assert (tmp_path / "srv.key").is_file()
    assert (tmp_path / "srv.key_secret").stat().st_mode & 0o077 == 0


def test_unreachable_backend_is_one_clear_line(tmp_path):
    out = cli("jobs", "--backend", "tcp://127.0.0.1:9", timeout=60)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "no answer" in out.stderr and "Traceback" not in out.stderr


def test_jobs_lists_fetches_and_shuts_down(server, tmp_path):
    c = server.client()
    job = c.submit("sleep", {"seconds": 0.1, "steps": 2})
    c.wait(job, timeout=30)
    listing = cli("jobs", "--backend", server.address)
    assert listing.returncode == 0 and job in listing.stdout and "done" in listing.stdout
    fetched = cli("jobs", job, "--backend", server.address, "--fetch", str(tmp_path / "got"))
    assert fetched.returncode == 0 and (tmp_path / "got" / "slept.txt").read_text() == "0.1\n"
    stop = cli("jobs", "--backend", server.address, "--shutdown", "--cache", str(server.cache))
    assert stop.returncode == 0
    assert server.proc.wait(10) == 0
