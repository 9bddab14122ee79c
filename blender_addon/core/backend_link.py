"""A non-blocking link to the Splatstage backend for Blender's UI.

A worker thread owns the ``shared_protocol.client.Client`` (its socket is not thread-safe),
executes commands from an inbox queue and turns every backend message into a
:class:`LinkEvent` in an outbox queue. Blender's main thread calls :meth:`BackendLink.drain`
from a ``bpy.app.timers`` function, so nothing in the UI ever waits on the network.
Failures (backend errors, timeouts, disconnects, a missing pyzmq) become ``error`` or
``disconnected`` events; the worker never dies silently.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

TERMINAL = ("result", "error", "cancelled")


@dataclass
class LinkEvent:
    """What the main thread sees: ``kind`` is connected, disconnected, submitted, progress,
    result, error or cancelled; ``job`` is the local job tag (None for link-level events)."""

    kind: str
    job: str | None = None
    job_id: str | None = None
    content: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)   # name -> local path (results fetched to disk)


def load_curve_keys(server_key_file: str = "", client_key_file: str = ""):
    """(server_public_key, client_keys) for CURVE from ZeroMQ certificate files, or Nones.

    ``server_key_file`` holds the server's public key; ``client_key_file`` the client's secret
    certificate (public + secret). Without a client file an ephemeral key pair is generated.
    """
    if not server_key_file:
        return None, None
    import zmq
    import zmq.auth

    try:
        server_public, _ = zmq.auth.load_certificate(server_key_file)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{server_key_file}: cannot read the server's CURVE key ({exc})") from None
    if client_key_file:
        try:
            pub, sec = zmq.auth.load_certificate(client_key_file)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{client_key_file}: cannot read the client CURVE key ({exc})") from None
        if sec is None:
            raise ValueError(f"{client_key_file}: has no secret key (use the .key_secret file)")
        client_keys = (pub, sec)
    else:
        client_keys = zmq.curve_keypair()
    return server_public, client_keys


def _error_content(exc: BaseException) -> dict:
    return {"code": getattr(exc, "code", type(exc).__name__),
            "message": getattr(exc, "message", None) or str(exc) or type(exc).__name__,
            "hint": getattr(exc, "hint", "") or ""}


class BackendLink:
    """Owns one backend connection on a worker thread; see the module docstring.

    ``client_factory(address, server_public_key, client_keys, timeout)`` builds the client;
    it defaults to ``shared_protocol.client.Client``.
    """

    def __init__(self, address: str, *, server_key_file: str = "", client_key_file: str = "",
                 timeout: float = 10.0, client_factory: Callable | None = None,
                 poll_interval: float = 0.05, liveness_s: float = 3.0):
        self.address = address
        self._keys = (server_key_file, client_key_file)
        self._timeout = timeout
        self._factory = client_factory
        self._poll = poll_interval
        self._liveness = liveness_s
        self._inbox: queue.Queue = queue.Queue()
        self._outbox: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._jobs: dict[str, dict] = {}        # job_id -> {"tag", "fetch_to"}
        self._counter = 0
        self.welcome: dict | None = None

    # -- main thread ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker, which connects and reports ``connected`` or ``disconnected``."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="splatstage-link", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, kind: str, params: dict, arrays: dict | None = None,
               fetch_to: str | Path | None = None, tag: str | None = None) -> str:
        """Queue a job; returns the local tag that its events carry. With ``fetch_to`` the
        result's files are downloaded there before the ``result`` event is posted."""
        self._counter += 1
        tag = tag or f"{kind}-{self._counter}"
        self._inbox.put(("submit", tag, kind, params, arrays, None if fetch_to is None else str(fetch_to)))
        return tag

    def cancel(self, tag: str) -> None:
        self._inbox.put(("cancel", tag))

    def stop(self, join_timeout: float = 5.0) -> None:
        """Ask the worker to close the connection and end; waits up to ``join_timeout``."""
        self._stop.set()
        self._inbox.put(("stop",))
        if self._thread is not None:
            self._thread.join(join_timeout)

    def drain(self, limit: int = 1000) -> list[LinkEvent]:
        """Events posted since the last call (never blocks)."""
        out = []
        while len(out) < limit:
            try:
                out.append(self._outbox.get_nowait())
            except queue.Empty:
                break
        return out

    # -- worker thread -------------------------------------------------------------------
    def _post(self, *args, **kwargs) -> None:
        self._outbox.put(LinkEvent(*args, **kwargs))

    def _make_client(self):
        server_public, client_keys = load_curve_keys(*self._keys)
        if self._factory is not None:
            return self._factory(self.address, server_public, client_keys, self._timeout)
        from ..vendor import module

        client_mod = module("client")
        return client_mod.Client(self.address, server_public_key=server_public,
                                 client_keys=client_keys, timeout=self._timeout)

    def _run(self) -> None:
        client = None
        try:
            client = self._make_client()
            if not self._connect(client):
                return
            self._post("connected", content=self.welcome)
            last_check = time.monotonic()
            while not self._stop.is_set():
                self._handle_commands(client)
                if self._stop.is_set():
                    break
                msgs = client.poll(timeout=self._poll)
                for msg in msgs:
                    self._handle_message(client, msg)
                now = time.monotonic()
                if msgs:
                    last_check = now
                elif now - last_check > self._liveness:
                    self._check_alive(client)
                    last_check = time.monotonic()
        except ImportError as exc:
            self._post("disconnected", content={"code": "missing_dependency", "message": str(exc),
                                                "hint": "install the extension's bundled pyzmq wheel"})
        except Exception as exc:  # noqa: BLE001 - reported to the UI, never raised into Blender
            self._post("disconnected", content=_error_content(exc))
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001
                    pass
            for job_id, info in list(self._jobs.items()):
                self._post("error", info["tag"], job_id, {"code": "disconnected",
                                                          "message": "connection to the backend closed",
                                                          "hint": ""})
            self._jobs.clear()

    def _connect(self, client) -> bool:
        """Handshake in short attempts so that :meth:`stop` is honoured within ~0.5 s."""
        deadline = time.monotonic() + self._timeout
        while not self._stop.is_set():
            try:
                self.welcome = dict(client.connect(timeout=0.5))
                return True
            except Exception as exc:  # noqa: BLE001
                if type(exc).__name__ != "BackendTimeout" or time.monotonic() > deadline:
                    raise
        return False

    def _check_alive(self, client) -> None:
        """Ping a quiet server; reconnect once if it does not answer, else raise (disconnected)."""
        try:
            client.ping(timeout=min(2.0, self._timeout))
        except Exception as exc:  # noqa: BLE001
            if type(exc).__name__ != "BackendTimeout":
                raise
            self._post("progress", None, None, {"message": "backend not answering; reconnecting"})
            self.welcome = dict(client.reconnect(attempts=2))

    def _tag_to_id(self, tag: str) -> str | None:
        for job_id, info in self._jobs.items():
            if info["tag"] == tag:
                return job_id
        return None

    def _handle_commands(self, client) -> None:
        while True:
            try:
                cmd = self._inbox.get_nowait()
            except queue.Empty:
                return
            if cmd[0] == "stop":
                self._stop.set()
                return
            if cmd[0] == "submit":
                _, tag, kind, params, arrays, fetch_to = cmd
                try:
                    job_id = client.submit(kind, params, arrays)
                except Exception as exc:  # noqa: BLE001
                    self._post("error", tag, None, _error_content(exc))
                    if type(exc).__name__ == "BackendTimeout":
                        raise
                    continue
                self._jobs[job_id] = {"tag": tag, "fetch_to": fetch_to}
                self._post("submitted", tag, job_id, {"kind": kind})
            elif cmd[0] == "cancel":
                job_id = self._tag_to_id(cmd[1])
                if job_id is not None:
                    try:
                        client.cancel(job_id)
                    except Exception as exc:  # noqa: BLE001
                        self._post("error", cmd[1], job_id, _error_content(exc))

    def _handle_message(self, client, msg) -> None:
        info = self._jobs.get(msg.job_id)
        if info is None:
            return
        tag = info["tag"]
        mtype = msg.type
        content = dict(msg.content or {})
        if mtype == "progress":
            self._post("progress", tag, msg.job_id, content)
            return
        if mtype not in TERMINAL:
            return
        del self._jobs[msg.job_id]
        if mtype == "result":
            files = {}
            arrays = dict(getattr(msg, "arrays", None) or {})
            try:
                if info["fetch_to"]:
                    full = client.fetch(msg.job_id)
                    content = dict(full.content or content)
                    arrays = dict(getattr(full, "arrays", None) or arrays)
                    dest = Path(info["fetch_to"])
                    dest.mkdir(parents=True, exist_ok=True)
                    for name in _file_names(content.get("files")):
                        target = dest / name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        client.fetch_file(msg.job_id, name, str(target))
                        files[name] = str(target)
            except Exception as exc:  # noqa: BLE001
                self._post("error", tag, msg.job_id, _error_content(exc))
                return
            self._post("result", tag, msg.job_id, content, arrays, files)
        else:
            self._post(mtype, tag, msg.job_id, content)


def _file_names(manifest: Any) -> list[str]:
    """File names from a result's ``files`` manifest (a list of names or of dicts, or a dict)."""
    if not manifest:
        return []
    if isinstance(manifest, dict):
        return [str(k) for k in manifest]
    names = []
    for item in manifest:
        names.append(str(item.get("name") if isinstance(item, dict) else item))
    return names


def run_job_blocking(client, kind: str, params: dict, *, fetch_to: str | Path | None = None,
                     on_progress: Callable[[dict], None] | None = None,
                     timeout: float = 3600.0) -> LinkEvent:
    """Submit a job on an already connected client and wait for its end (headless use).

    Returns the ``result`` event (files fetched to ``fetch_to``); raises RuntimeError with the
    backend's message and hint on error or cancellation.
    """
    job_id = client.submit(kind, params)
    deadline = time.monotonic() + timeout
    for msg in client.events(job_id, timeout):
        if msg.type == "progress" and on_progress is not None:
            on_progress(dict(msg.content or {}))
        elif msg.type in ("error", "cancelled"):
            c = _error_content_from(msg.content)
            hint = f" ({c['hint']})" if c["hint"] else ""
            raise RuntimeError(f"{kind} job {msg.type}: {c['message']}{hint}")
        elif msg.type == "result":
            full = client.fetch(job_id) if fetch_to else msg
            content = dict(full.content or {})
            files = {}
            if fetch_to:
                dest = Path(fetch_to)
                dest.mkdir(parents=True, exist_ok=True)
                for name in _file_names(content.get("files")):
                    (dest / name).parent.mkdir(parents=True, exist_ok=True)
                    client.fetch_file(job_id, name, str(dest / name))
                    files[name] = str(dest / name)
            return LinkEvent("result", kind, job_id, content, dict(getattr(full, "arrays", None) or {}), files)
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"{kind} job {job_id}: no result within {timeout:.0f} s")


def _error_content_from(content) -> dict:
    content = dict(content or {})
    return {"code": content.get("code", "error"), "message": content.get("message") or "cancelled",
            "hint": content.get("hint", "")}
