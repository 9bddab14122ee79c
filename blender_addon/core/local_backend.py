"""Start and stop a local ``splatstage serve`` process for the add-on's "start local backend"."""
from __future__ import annotations

import atexit
import os
import subprocess
import sys
from pathlib import Path


def serve_command(python: str, address: str, cache_dir: str, root_dir: str) -> list[str]:
    """The command line that runs the backend server with ``python``."""
    return [python, "-m", "backend.cli", "serve", "--bind", address, "--cache", cache_dir, "--root", root_dir]


def start(python: str, address: str, cache_dir: str, root_dir: str, log_path: str | None = None) -> subprocess.Popen:
    """Spawn the server as a separate process (its own process group); returns the Popen.

    Raises FileNotFoundError naming ``python`` when the interpreter does not exist.
    """
    if not python or not Path(python).is_file():
        raise FileNotFoundError(f"{python or '(empty)'}: backend Python interpreter not found")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    kwargs = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True
    else:
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    try:
        proc = subprocess.Popen(serve_command(python, address, cache_dir, root_dir), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, **kwargs)
        atexit.register(stop, proc)
        return proc
    finally:
        if log is not subprocess.DEVNULL:
            log.close()


def stop(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """Terminate the server (then kill it if it does not exit within ``timeout``)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def default_python() -> str:
    """A guess for the backend interpreter: ``splatstage`` next to this Python, else empty."""
    exe = Path(sys.executable)
    return str(exe) if (exe.parent / "splatstage").exists() else ""
