"""Executors: where the server's jobs run.

The server keeps the queue, the job store and the clients; an executor only starts a job and
hands back a :class:`JobHandle` that the server polls for events (the worker's JSON events:
``started``, ``progress``, then one final ``result``, ``error`` or ``cancelled``) and can stop.

- :class:`LocalExecutor` (the default): one worker process per job on this host
  (multiprocessing ``forkserver``), limited by the server's GPU and CPU slots.
- ``backend.server.executor_ray.RayExecutor`` (``splatstage serve --ray``): each job is a Ray
  task on a node of a Ray cluster whose resources fit the job's kind; Ray queues the jobs.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

from backend.server.store import JobRecord


class JobHandle:
    """A started job as the server sees it, whichever executor runs it."""

    #: True once the job runs on a node (a Ray task may first wait for resources).
    started: bool = True
    #: Where it runs (the Ray node id); None for a local worker process.
    node: str | None = None

    def fileno(self) -> int | None:
        """A file descriptor that becomes readable when events arrive, or None (polled)."""
        return None

    def events(self) -> list[dict]:
        """The events that arrived since the last call, oldest first."""
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def terminate(self) -> None:
        """Ask the job to stop (the server kills it after its grace period)."""
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def death(self) -> str:
        """How the job ended without a final event, for the ``job_crashed`` message."""
        raise NotImplementedError


class Executor:
    #: Whether the server's ``--gpu-workers``/``--cpu-workers`` slots limit what starts;
    #: False where the executor queues jobs itself (Ray waits for a node with room).
    uses_slots: bool = True

    def start(self, rec: JobRecord, job_dir: Path) -> JobHandle:
        raise NotImplementedError

    def poll(self) -> None:
        """Collect events for every handle (called once per server step)."""

    def close(self) -> None:
        pass


class LocalHandle(JobHandle):
    def __init__(self, kind: str, proc, conn):
        self.kind, self.proc, self.conn = kind, proc, conn

    def fileno(self) -> int | None:
        return self.conn.fileno() if self.conn is not None else None

    def events(self) -> list[dict]:
        out = []
        if self.conn is None:
            return out
        try:
            while self.conn.poll():
                out.append(json.loads(self.conn.recv_bytes()))
        except (EOFError, OSError, ValueError):
            self.conn.close()
            self.conn = None
        return out

    def alive(self) -> bool:
        if self.proc.is_alive():
            return True
        self.proc.join(0)
        return False

    def terminate(self) -> None:
        if self.proc.pid:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(2)

    def death(self) -> str:
        code = self.proc.exitcode
        how = f"signal {-code} ({_signame(-code)})" if code is not None and code < 0 else f"exit code {code}"
        return f"the {self.kind} worker process died ({how})"


class LocalExecutor(Executor):
    """One worker process per job on this host (``backend.server.worker``)."""

    def __init__(self):
        self.mp = multiprocessing.get_context("forkserver")
        self.mp.set_forkserver_preload(["numpy", "backend.server.worker", "backend.runner"])

    def start(self, rec: JobRecord, job_dir: Path) -> JobHandle:
        from backend.server.worker import worker_main

        parent, child = self.mp.Pipe(duplex=False)
        proc = self.mp.Process(target=worker_main, args=(child, rec.kind, rec.params, str(job_dir)),
                               name=f"splatstage-job-{rec.job_id[:8]}", daemon=True)
        proc.start()
        child.close()
        return LocalHandle(rec.kind, proc, parent)


def job_units(params: dict) -> int:
    """GPU units a job's parameters ask for (``gpus``, default 1)."""
    try:
        return max(1, int(params.get("gpus", 1)))
    except (TypeError, ValueError, OverflowError):
        return 1


def _signame(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return "unknown"
