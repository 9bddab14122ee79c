"""Shared fixtures: a live job server on loopback in a subprocess."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.server.launch import ServerProcess, free_port  # noqa: F401 (fixtures and tests use them)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path, "--gpu-workers", "2", "--cpu-workers", "2").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"test data folder {SHARED_DATA} is missing (it lives beside the checkout)")
    return SHARED_DATA


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


os.environ.setdefault("PYTHONUNBUFFERED", "1")
