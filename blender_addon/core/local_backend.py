"""Start and stop a local ``splatstage serve`` process: the add-on's "start local backend" and
the headless batch's own backend when nothing answers (bpy-free)."""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable


def serve_command(python: str, address: str, cache_dir: str, root_dir: str | Iterable[str]) -> list[str]:
    """The command line that runs the backend server with ``python`` (one ``--root`` per folder)."""
    roots = [root_dir] if isinstance(root_dir, (str, os.PathLike)) else list(root_dir)
    cmd = [python, "-m", "backend.cli", "serve", "--bind", address, "--cache", cache_dir]
    for root in roots:
        cmd += ["--root", str(root)]
    return cmd


def start(python: str, address: str, cache_dir: str, root_dir: str | Iterable[str],
          log_path: str | None = None) -> subprocess.Popen:
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
        proc.splatstage_group = proc.pid if os.name == "posix" else None  # its own session's group
        atexit.register(stop, proc)
        return proc
    finally:
        if log is not subprocess.DEVNULL:
            log.close()


def stop(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """Terminate the server (then kill it if it does not exit within ``timeout``), and on POSIX
    whatever is left of its process group (the server's own session: its job workers)."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    group = getattr(proc, "splatstage_group", None)
    if group is not None:
        deadline = time.monotonic() + timeout
        sig = signal.SIGTERM
        while group_alive(group):
            try:
                os.killpg(group, sig)
            except (ProcessLookupError, PermissionError):
                break
            if time.monotonic() > deadline:
                sig = signal.SIGKILL
            time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    """Whether any process of process group ``pgid`` is still running (zombies excluded; POSIX)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def free_address(host: str = "127.0.0.1") -> str:
    """A ``tcp://`` address on a port nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return f"tcp://{host}:{s.getsockname()[1]}"


def answers(client_cls, address: str, timeout: float = 2.0, **client_kw) -> bool:
    """Whether a backend at ``address`` answers the handshake within ``timeout`` seconds
    (``client_cls``: ``shared_protocol.client.Client``)."""
    client = client_cls(address, timeout=timeout, **client_kw)
    try:
        client.connect()
        return True
    except Exception:  # noqa: BLE001 - no answer, refused, wrong keys: not usable
        return False
    finally:
        client.close()


def wait_until_ready(proc: subprocess.Popen, client_cls, address: str, timeout: float = 60.0,
                     log_path: str | None = None) -> None:
    """Wait until the server started as ``proc`` answers; RuntimeError (naming the last line of
    its log) when it exits first or does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the local backend exited with code {proc.returncode}{_log_tail(log_path)}")
        if answers(client_cls, address, timeout=1.0):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the local backend did not answer at {address} within {timeout:.0f} s"
                               f"{_log_tail(log_path)}")
        time.sleep(0.2)


def _log_tail(log_path: str | None) -> str:
    try:
        lines = [ln for ln in Path(log_path).read_text(errors="replace").splitlines() if ln.strip()] if log_path else []
    except OSError:
        lines = []
    return f": {lines[-1].strip()}" if lines else ""


def checkout_python() -> str:
    """The virtual environment of the source checkout this add-on lives in (``.venv``), if any."""
    venv = Path(__file__).resolve().parents[2] / ".venv"
    for exe in (venv / "bin" / "python", venv / "Scripts" / "python.exe"):
        if exe.is_file():
            return str(exe)
    return ""


def default_python() -> str:
    """A guess for the backend interpreter: this Python when ``splatstage`` is installed next to
    it, else the source checkout's ``.venv``, else empty."""
    exe = Path(sys.executable)
    if (exe.parent / "splatstage").exists() or (exe.parent / "splatstage.exe").exists():
        return str(exe)
    return checkout_python()
