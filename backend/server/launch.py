"""Start ``splatstage serve`` in a subprocess and wait until it answers a handshake.

Used by tests, benchmarks and anything that needs a private local server.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``splatstage serve`` in a subprocess, restartable on the same cache and port."""

    def __init__(self, tmp: Path, *extra: str, port: int | None = None):
        self.tmp = tmp
        self.cache = tmp / "cache"
        self.root = tmp / "root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ServerProcess":
        cmd = [sys.executable, "-m", "backend.cli", "serve", "--bind", self.address, "--cache", str(self.cache),
               "--root", str(self.root), *self.extra]
        self.log = open(self.tmp / f"server-{time.time_ns()}.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)
        from shared_protocol.client import BackendTimeout, Client

        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                c = Client(self.address, timeout=0.5)
                c.connect()
                c.close()
                return self
            except BackendTimeout:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def client(self, **kw):
        from shared_protocol.client import Client

        c = Client(self.address, timeout=kw.pop("timeout", 10.0), **kw)
        c.connect()
        return c

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
