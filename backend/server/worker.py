"""The worker process: runs one job and reports to the server over a pipe (JSON frames).

The server starts one worker process per job (multiprocessing ``forkserver``), so a crash in
a pipeline (segfault, CUDA OOM abort, ``os._exit``) takes down only that process.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path

import numpy as np

from backend.progress import Cancelled, JobError, Progress


def worker_main(conn, kind: str, params: dict, job_dir: str) -> None:
    job = Path(job_dir)
    redirect_output(job)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def send(obj: dict) -> None:
        conn.send_bytes(encode_event(obj))

    try:
        send(run_to_final(kind, params, job, send))
    finally:
        conn.close()


def redirect_output(job: Path) -> None:
    """Send this process's stdout and stderr (also of C code) to the job's ``log.txt``."""
    log = open(job / "log.txt", "ab", buffering=0)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)


def encode_event(obj: dict) -> bytes:
    return json.dumps(obj, allow_nan=False, default=_json_default).encode()


def run_to_final(kind: str, params: dict, job: Path, send) -> dict:
    """Run the job (progress events through ``send``) and return its final event: ``result``
    (files and arrays under ``job``), ``cancelled`` or ``error``."""
    from backend.runner import run_job

    progress = Progress(callback=lambda ev: send({"event": "progress", **ev}))
    try:
        result = run_job(kind, params, job / "out", progress)
        names = _save_arrays(result.arrays, job / "arrays")
        return {"event": "result", "files": list(result.files), "arrays": names, "summary": result.summary}
    except Cancelled:
        return {"event": "cancelled"}
    except JobError as exc:
        return {"event": "error", "code": exc.code, "message": exc.message, "hint": exc.hint}
    except MemoryError:
        return {"event": "error", "code": "job_failed", "message": "out of memory",
                "hint": "try a smaller input or resolution"}
    except Exception as exc:  # an unexpected bug: report one line, keep the traceback in the job's log
        traceback.print_exc()
        first = " ".join(str(exc).split())[:300]
        return {"event": "error", "code": "internal", "message": f"{type(exc).__name__}: {first}",
                "hint": f"see {job / 'log.txt'}"}


def _save_arrays(arrays: dict, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name, arr in arrays.items():
        tmp = folder / f".{name}.npy.tmp"
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
        os.replace(tmp, folder / f"{name}.npy")
        names.append(name)
    return names


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
