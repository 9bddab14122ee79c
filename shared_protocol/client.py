"""The Splatstage client: a DEALER socket speaking the wire protocol (pure Python + pyzmq).

Used by the CLI and by the Blender add-on. Nothing in it blocks forever: every wait has a
timeout, and a lost connection is re-established with backoff, after which the client asks
the server for the jobs it was watching (results live on the server's disk). The socket is
not thread-safe: one thread owns a Client.
"""
from __future__ import annotations

import hashlib
import time
from collections import deque
from pathlib import Path
from typing import Callable, Iterator

import zmq

from . import PROTOCOL_VERSION
from .atomic import atomic_write_bytes
from .messages import FINAL_STATES
from .wire import Message, ProtocolError, check_version, decode, encode

FINAL_EVENTS = ("result", "error", "cancelled")


class BackendError(Exception):
    """The backend answered with an error (``code``, one-line ``message``, ``hint``)."""

    def __init__(self, code: str, message: str, hint: str = "", job_id: str | None = None):
        super().__init__(message if not hint else f"{message} ({hint})")
        self.code, self.message, self.hint, self.job_id = code, message, hint, job_id


class BackendTimeout(BackendError):
    def __init__(self, message: str):
        super().__init__("timeout", message, "is 'splatstage serve' running at that address?")


class Client:
    def __init__(self, address: str = "tcp://127.0.0.1:5555", *, server_public_key: bytes | None = None,
                 client_keys: tuple[bytes, bytes] | None = None, timeout: float = 10.0,
                 client_name: str = "splatstage-client", max_message_bytes: int = -1):
        self.address = address
        self.timeout = float(timeout)
        self.server_public_key = server_public_key
        self.client_keys = client_keys
        self.client_name = client_name
        self.max_message_bytes = max_message_bytes
        self.welcome: dict | None = None
        self.heartbeat_s = 2.0
        self._ctx = zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._inbox: deque[Message] = deque()
        self._watching: set[str] = set()
        self._last_heard = 0.0
        self._last_ping = 0.0

    # -- connection ---------------------------------------------------------------------
    def connect(self, timeout: float | None = None) -> dict:
        """Open the socket and handshake; returns the server's welcome content."""
        self._open()
        reply = self.request(Message("hello", {"client": self.client_name, "client_version": PROTOCOL_VERSION}),
                             timeout=timeout)
        if reply.type != "welcome":
            raise BackendError("bad_message", f"expected welcome, got {reply.type}")
        try:
            check_version(reply.protocol)
        except ProtocolError as exc:
            raise BackendError("version_mismatch", str(exc), "upgrade the older of the add-on and the backend") from None
        self.welcome = reply.content
        self.heartbeat_s = float(reply.content.get("heartbeat_s", 2.0))
        return reply.content

    def reconnect(self, attempts: int = 8, first_delay: float = 0.1, max_delay: float = 2.0) -> dict:
        """Reconnect with exponential backoff and resume watching the jobs this client watched."""
        delay, last = first_delay, None
        for _ in range(attempts):
            try:
                welcome = self.connect(timeout=max(1.0, min(self.timeout, 5.0)))
                for job_id in list(self._watching):
                    self._send(Message("status", {"watch": True}, job_id=job_id))
                return welcome
            except BackendTimeout as exc:
                last = exc
                time.sleep(delay)
                delay = min(delay * 2, max_delay)
        raise last or BackendTimeout(f"cannot reach {self.address}")

    def _open(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.SNDBUF, 8 << 20)
        sock.setsockopt(zmq.RCVBUF, 8 << 20)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if self.server_public_key is not None:
            public, secret = self.client_keys or zmq.curve_keypair()
            sock.curve_serverkey = self.server_public_key
            sock.curve_publickey = public
            sock.curve_secretkey = secret
        sock.connect(self.address)
        self._sock = sock
        self._inbox.clear()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def __enter__(self) -> "Client":
        if self._sock is None:
            self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- low level ----------------------------------------------------------------------
    def _send(self, msg: Message) -> None:
        if self._sock is None:
            raise BackendError("not_connected", "the client is not connected", "call connect() first")
        try:
            self._sock.send_multipart(encode(msg), copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            raise BackendTimeout(f"cannot send to {self.address}: the connection is not ready") from None

    def _recv(self, timeout: float) -> Message | None:
        if self._sock is None or not self._sock.poll(max(0, int(timeout * 1000)), zmq.POLLIN):
            return None
        frames = self._sock.recv_multipart(copy=False)
        self._last_heard = time.monotonic()
        try:
            return decode(frames)
        except ProtocolError as exc:
            if exc.code == "version_mismatch":
                raise BackendError("version_mismatch", str(exc), "upgrade the older of the add-on and the backend") from None
            return Message("error", {"code": exc.code, "message": f"undecodable message from the server: {exc}",
                                     "hint": ""})

    def request(self, msg: Message, timeout: float | None = None) -> Message:
        """Send ``msg`` and return the reply to it (other messages are kept for ``poll``)."""
        timeout = self.timeout if timeout is None else timeout
        self._send(msg)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BackendTimeout(f"no answer to {msg.type} from {self.address} within {timeout:.0f} s")
            reply = self._recv(left)
            if reply is None:
                continue
            if reply.parent == msg.msg_id:
                if reply.type == "error":
                    c = reply.content
                    raise BackendError(c.get("code", "internal"), c.get("message", ""), c.get("hint", ""),
                                       reply.job_id)
                return reply
            if reply.type != "pong":
                self._inbox.append(reply)

    # -- requests -----------------------------------------------------------------------
    def submit(self, kind: str, params: dict, arrays: dict | None = None, watch: bool = True) -> str:
        reply = self.request(Message("submit", {"kind": kind, "params": params, "watch": watch}, arrays or {}))
        if watch:
            self._watching.add(reply.job_id)
        self.last_accepted = reply.content
        return reply.job_id

    def cancel(self, job_id: str) -> None:
        """Ask the server to cancel; the job's ``cancelled`` event follows within 2 s."""
        self._watching.add(job_id)
        self._send(Message("cancel", job_id=job_id))

    def status(self, job_id: str, watch: bool = False) -> dict:
        if watch:
            self._watching.add(job_id)
        return self.request(Message("status", {"watch": watch}, job_id=job_id)).content

    def jobs(self, limit: int = 100) -> list[dict]:
        return self.request(Message("list_jobs", {"limit": limit})).content["jobs"]

    def fetch(self, job_id: str, timeout: float | None = None) -> Message:
        """The finished job's ``result`` message (manifest, summary, arrays)."""
        return self.request(Message("fetch", {"file": None}, job_id=job_id), timeout=timeout)

    def fetch_file(self, job_id: str, name: str, dest: Path, timeout: float | None = None) -> Path:
        """Download one output file of a finished job to ``dest`` (atomically, checksum verified)."""
        reply = self.request(Message("fetch", {"file": name}, job_id=job_id), timeout=timeout)
        data = reply.arrays.get("data")
        if data is None:
            raise BackendError("bad_message", f"the server sent no data for {name}")
        raw = memoryview(data).cast("B")
        digest = hashlib.sha256(raw).hexdigest()
        if reply.content.get("sha256") and digest != reply.content["sha256"]:
            raise BackendError("bad_message", f"checksum mismatch for {name}")
        return atomic_write_bytes(dest, raw)

    def ping(self, timeout: float | None = None) -> float:
        """Round trip time in seconds."""
        t0 = time.perf_counter()
        self.request(Message("ping", {"t": t0}), timeout=timeout)
        return time.perf_counter() - t0

    def shutdown(self, token: str) -> None:
        self.request(Message("shutdown", {"token": token}))

    # -- events -------------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> list[Message]:
        """Every message that has arrived (waiting up to ``timeout`` for the first); never blocks
        longer. Sends a heartbeat when one is due. Suited to a GUI timer."""
        self._heartbeat()
        out = list(self._inbox)
        self._inbox.clear()
        msg = self._recv(0 if out else timeout)
        while msg is not None:
            if msg.type != "pong":
                out.append(msg)
            msg = self._recv(0)
        for m in out:
            if m.type in FINAL_EVENTS and m.job_id:
                self._watching.discard(m.job_id)
        return out

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if self._sock is not None and now - self._last_ping >= self.heartbeat_s:
            self._last_ping = now
            try:
                self._send(Message("ping", {"t": time.time()}))
            except BackendTimeout:
                pass

    def events(self, job_id: str, timeout: float | None = None, silence_timeout: float | None = None) -> Iterator[Message]:
        """Yield the job's messages until its final one (result, error or cancelled).

        ``timeout`` bounds the whole wait (None: unbounded, while the server answers).
        When the server is silent for ``silence_timeout`` seconds (default: four heartbeats)
        the client reconnects and resumes; if that fails, BackendTimeout is raised.
        """
        self._watching.add(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        silence = silence_timeout or 4 * self.heartbeat_s + 1.0
        self._send(Message("status", {"watch": True}, job_id=job_id))  # also covers jobs finished meanwhile
        self._last_heard = time.monotonic()
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise BackendTimeout(f"job {job_id} did not finish within {timeout:.0f} s")
            for msg in self.poll(timeout=min(0.25, self.heartbeat_s)):
                if msg.job_id != job_id and not (msg.type == "error" and msg.job_id is None):
                    if msg.job_id:
                        self._inbox.append(msg)
                    continue
                if msg.type == "job":
                    if msg.content.get("state") in FINAL_STATES:
                        yield from self._final_from_status(job_id, msg.content)
                        return
                    continue
                yield msg
                if msg.type in FINAL_EVENTS:
                    return
            if time.monotonic() - self._last_heard > silence:
                self.reconnect()
                self._send(Message("status", {"watch": True}, job_id=job_id))
                self._last_heard = time.monotonic()

    def _final_from_status(self, job_id: str, status: dict) -> Iterator[Message]:
        state = status.get("state")
        if state == "done":
            yield self.fetch(job_id)
        elif state == "cancelled":
            yield Message("cancelled", {"state": "cancelled"}, job_id=job_id)
        else:
            err = status.get("error") or {}
            yield Message("error", {"code": err.get("code", "job_failed"), "message": err.get("message", "failed"),
                                    "hint": err.get("hint", "")}, job_id=job_id)

    def wait(self, job_id: str, timeout: float | None = None,
             on_progress: Callable[[dict], None] | None = None) -> Message:
        """Wait for the job's result; raise BackendError on failure or cancellation."""
        for msg in self.events(job_id, timeout=timeout):
            if msg.type == "progress" and on_progress is not None:
                on_progress(msg.content)
            elif msg.type == "result":
                return msg
            elif msg.type == "cancelled":
                raise BackendError("cancelled", f"job {job_id} was cancelled", job_id=job_id)
            elif msg.type == "error":
                c = msg.content
                raise BackendError(c.get("code", "job_failed"), c.get("message", ""), c.get("hint", ""), job_id)
        raise BackendError("internal", f"job {job_id}: event stream ended without a result")
