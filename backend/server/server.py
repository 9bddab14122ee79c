"""The job server: a ROUTER socket, a job store and an executor that runs the jobs.

The main loop only moves messages; it never runs pipeline code. It polls the ROUTER socket
and the running jobs' handles, schedules queued jobs onto free slots (or hands them all to a
Ray cluster, which queues them by resources: ``backend/server/executor_ray.py``), enforces
cancellation deadlines and drops watchers that stopped sending heartbeats.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from backend import __version__
from backend.fileutil import PathNotAllowed, confine, hash_input
from backend.jobs import KINDS, available
from backend.server.executor import Executor, JobHandle, LocalExecutor, job_units
from backend.server.security import check_bind, load_keys
from backend.server.store import JobRecord, JobStore
from shared_protocol import PROTOCOL_VERSION
from shared_protocol.messages import FINAL_STATES, error, validate
from shared_protocol.wire import Message, ProtocolError, decode, encode, new_id

log = logging.getLogger("splatstage.server")

HEARTBEAT_S = 2.0
CANCEL_GRACE_S = 1.0


@dataclass
class ServerConfig:
    bind: str = "tcp://127.0.0.1:5555"
    cache_dir: Path = Path.home() / ".cache" / "splatstage"
    roots: list[Path] = field(default_factory=lambda: [Path.cwd()])
    gpu_workers: int = 1
    cpu_workers: int = 1
    max_message_bytes: int = 256 << 20
    curve_secret: Path | None = None
    curve_clients: Path | None = None
    #: Ray cluster address ("local" starts a private one); None runs jobs in local worker processes.
    ray_address: str | None = None
    #: Ray resources: CPUs a CPU job asks for, and the resource that stands for one GPU.
    ray_job_cpus: float = 1.0
    ray_gpu_resource: str = "GPU"
    #: Times a job whose Ray node died is run again on another node before it fails.
    ray_node_retries: int = 2


@dataclass
class Running:
    rec: JobRecord
    handle: JobHandle
    slot: str
    cancel_deadline: float | None = None
    units: int = 1
    final: dict | None = None


class Server:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.cache_dir = Path(config.cache_dir).resolve()
        self.store = JobStore(self.cache_dir)
        self.roots = [Path(r).resolve() for r in config.roots]
        self.ctx = zmq.Context()
        self.auth = None
        self.socket = self.ctx.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, config.max_message_bytes)
        self.socket.setsockopt(zmq.SNDHWM, 1000)
        self.socket.setsockopt(zmq.RCVHWM, 1000)
        self.socket.setsockopt(zmq.SNDBUF, 8 << 20)  # large kernel buffers: bulk results stream faster
        self.socket.setsockopt(zmq.RCVBUF, 8 << 20)
        self._setup_curve()
        check_bind(config.bind, self.auth is not None)
        self.socket.bind(config.bind)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.admin_token = secrets.token_hex(16)
        token_file = self.cache_dir / "admin.token"
        token_file.unlink(missing_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.admin_token)
        os.environ["SPLATSTAGE_CACHE"] = str(self.cache_dir)  # workers keep checkpoints and builds here
        self.executor = make_executor(config, self.cache_dir)
        self.queue: deque[str] = deque()
        self.running: dict[str, Running] = {}
        self.watchers: dict[str, set[bytes]] = {}
        self.last_seen: dict[bytes, float] = {}
        self.device, self.gpu_memory_gb = detect_device()
        self.stopping = False

    def _setup_curve(self) -> None:
        cfg = self.config
        if cfg.curve_secret is None:
            return
        public, secret = load_keys(cfg.curve_secret)
        if secret is None:
            raise ValueError(f"{cfg.curve_secret} holds no secret key")
        if cfg.curve_clients is None or not Path(cfg.curve_clients).is_dir():
            raise ValueError("CURVE needs --curve-clients: a folder of authorised client public keys")
        from zmq.auth.thread import ThreadAuthenticator

        self.auth = ThreadAuthenticator(self.ctx)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(cfg.curve_clients))
        self.socket.curve_secretkey = secret
        self.socket.curve_publickey = public
        self.socket.curve_server = True

    # -- main loop ----------------------------------------------------------------------
    def serve_forever(self) -> None:
        log.info("serving on %s (cache %s)", self.endpoint, self.cache_dir)
        try:
            while not self.stopping:
                self.step(0.05)
        finally:
            self.close()

    def step(self, timeout_s: float) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        fds = {}
        for run in self.running.values():
            fd = run.handle.fileno()
            if fd is not None:
                fds[fd] = run
                poller.register(fd, zmq.POLLIN)
        events = dict(poller.poll(int(timeout_s * 1000)))
        try:
            self.executor.poll()
        except Exception:  # a lost cluster connection must not take the server down
            log.exception("collecting job events failed")
        if self.socket in events:
            for _ in range(1000):
                try:
                    frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._on_frames(frames)
        for run in list(self.running.values()):
            fd = run.handle.fileno()
            if fd is None or fd in events:
                self._drain(run)
        self._reap()
        self._schedule()
        self._expire_watchers()

    def close(self) -> None:
        for run in list(self.running.values()):
            self._kill(run)
            self.store.finish(run.rec, "failed", error={"code": "job_crashed", "message": "the server stopped",
                                                        "hint": "submit it again"})
        self.running.clear()
        self.executor.close()
        for identity in list(self.last_seen):
            self._send(identity, Message("bye"))
        if self.auth is not None:
            self.auth.stop()
        self.socket.close(0)
        self.ctx.term()
        (self.cache_dir / "admin.token").unlink(missing_ok=True)

    # -- inbound ------------------------------------------------------------------------
    def _on_frames(self, frames) -> None:
        if len(frames) < 2:
            return
        identity = frames[0].bytes
        self.last_seen[identity] = time.monotonic()
        msg = None
        try:
            msg = decode(frames[1:], self.config.max_message_bytes)
            content = validate(msg)
        except ProtocolError as exc:
            # a message that decoded but does not validate is answered as a reply to it
            parent = exc.msg_id or (msg.msg_id if msg is not None else None)
            self._send(identity, error(exc.code, str(exc), _hint(exc.code), parent=parent))
            return
        handler = getattr(self, f"_on_{msg.type}", None)
        if handler is None:
            self._send(identity, error("unknown_type", f"{msg.type} is not a request", parent=msg.msg_id))
            return
        try:
            handler(identity, msg, content)
        except Exception as exc:  # a bug in a handler must not take the server down
            log.exception("handler %s failed", msg.type)
            self._send(identity, error("internal", f"{type(exc).__name__}: {exc}", parent=msg.msg_id))

    def _on_hello(self, identity, msg, content) -> None:
        kinds = {name: k.description for name, k in available().items()}
        self._send(identity, Message("welcome", {
            "server_version": __version__, "protocol_version": PROTOCOL_VERSION, "device": self.device,
            "gpu_memory_gb": self.gpu_memory_gb, "kinds": kinds,
            "max_message_bytes": self.config.max_message_bytes, "heartbeat_s": HEARTBEAT_S,
        }, parent=msg.msg_id))

    def _on_ping(self, identity, msg, content) -> None:
        self._send(identity, Message("pong", {"t": content["t"]}, parent=msg.msg_id))

    def _on_submit(self, identity, msg, content) -> None:
        kind = KINDS.get(content["kind"])
        if kind is None or kind.name not in available():
            self._send(identity, error("unknown_kind", f"unknown job kind {content['kind']!r}",
                                       f"available: {', '.join(sorted(available()))}", parent=msg.msg_id))
            return
        params = dict(content["params"])
        try:
            for name in kind.path_params:
                if params.get(name) is not None:
                    params[name] = _confine_param(params[name], self.roots)
        except (PathNotAllowed, FileNotFoundError) as exc:
            code = "path_not_allowed" if isinstance(exc, PathNotAllowed) else "bad_params"
            self._send(identity, error(code, str(exc), "start the server with --root covering your files"
                                       if code == "path_not_allowed" else "", parent=msg.msg_id))
            return
        key = cache_key(kind.name, params, kind.path_params, msg.arrays)
        cached = self.store.cached(key)
        if cached is not None:
            self._send(identity, Message("accepted", {"state": "done", "cached": True, "kind": kind.name},
                                         job_id=cached.job_id, parent=msg.msg_id))
            self._send_result(identity, cached, parent=msg.msg_id)
            return
        rec = JobRecord(job_id=new_id(), kind=kind.name, params=params, cache_key=key)
        job_dir = self.store.create(rec)
        if msg.arrays:
            import numpy as np

            (job_dir / "inputs").mkdir()
            for name, arr in msg.arrays.items():
                np.save(job_dir / "inputs" / f"{name}.npy", arr, allow_pickle=False)
            rec.params["input_arrays"] = {n: str(job_dir / "inputs" / f"{n}.npy") for n in msg.arrays}
            self.store.save(rec)
        self.queue.append(rec.job_id)
        if content["watch"]:
            self.watchers.setdefault(rec.job_id, set()).add(identity)
        self._send(identity, Message("accepted", {"state": "queued", "cached": False, "kind": kind.name},
                                     job_id=rec.job_id, parent=msg.msg_id))

    def _on_cancel(self, identity, msg, content) -> None:
        rec = self._job(identity, msg)
        if rec is None:
            return
        if rec.state == "queued" and rec.job_id in self.queue:
            self.queue.remove(rec.job_id)
            self.store.finish(rec, "cancelled")
            self._broadcast(rec, Message("cancelled", {"state": "cancelled"}, job_id=rec.job_id), also=identity)
        elif rec.job_id in self.running:
            run = self.running[rec.job_id]
            if run.cancel_deadline is None:
                run.cancel_deadline = time.monotonic() + CANCEL_GRACE_S
                self.watchers.setdefault(rec.job_id, set()).add(identity)
                run.handle.terminate()
        else:
            self._send(identity, Message("job", rec.public(), job_id=rec.job_id, parent=msg.msg_id))

    def _on_status(self, identity, msg, content) -> None:
        rec = self._job(identity, msg)
        if rec is None:
            return
        if content["watch"] and rec.state not in FINAL_STATES:
            self.watchers.setdefault(rec.job_id, set()).add(identity)
        self._send(identity, Message("job", rec.public(), job_id=rec.job_id, parent=msg.msg_id))

    def _on_list_jobs(self, identity, msg, content) -> None:
        recs = sorted(self.store.jobs.values(), key=lambda r: r.created, reverse=True)[: content["limit"]]
        self._send(identity, Message("jobs", {"jobs": [r.public() for r in recs]}, parent=msg.msg_id))

    def _on_fetch(self, identity, msg, content) -> None:
        rec = self._job(identity, msg)
        if rec is None:
            return
        if rec.state != "done":
            if rec.state == "failed" and rec.error:
                self._send(identity, error(rec.error["code"], rec.error["message"], rec.error.get("hint", ""),
                                           job_id=rec.job_id, parent=msg.msg_id))
            else:
                self._send(identity, error("not_finished", f"job {rec.job_id} is {rec.state}",
                                           job_id=rec.job_id, parent=msg.msg_id))
            return
        if content["file"] is None:
            self._send_result(identity, rec, parent=msg.msg_id)
            return
        path = self.store.file_path(rec, content["file"])
        if path is None or not path.is_file():
            self._send(identity, error("not_found", f"job {rec.job_id} has no file {content['file']!r}",
                                       job_id=rec.job_id, parent=msg.msg_id))
            return
        import numpy as np

        entry = next(e for e in rec.files if e["name"] == content["file"])
        data = np.memmap(path, dtype="u1", mode="r") if entry["size"] else np.zeros(0, "u1")
        self._send(identity, Message("file", dict(entry), {"data": data}, job_id=rec.job_id, parent=msg.msg_id))

    def _on_shutdown(self, identity, msg, content) -> None:
        if not secrets.compare_digest(content["token"], self.admin_token):
            self._send(identity, error("forbidden", "shutdown needs the admin token from the server's cache folder",
                                       parent=msg.msg_id))
            return
        self._send(identity, Message("bye", parent=msg.msg_id))
        self.stopping = True

    # -- jobs ---------------------------------------------------------------------------
    def _job(self, identity, msg) -> JobRecord | None:
        rec = self.store.jobs.get(msg.job_id)
        if rec is None:
            self._send(identity, error("not_found", f"no job {msg.job_id}", job_id=msg.job_id, parent=msg.msg_id))
        return rec

    def _schedule(self) -> None:
        """Start queued jobs in order while their slot has room. A job on N GPUs (``gpus``)
        takes N GPU units, and one needing more units than the server has runs alone. Jobs of a
        slot start first come, first served: one that must wait holds back the later ones."""
        busy = {"gpu": 0, "cpu": 0}
        for run in self.running.values():
            busy[run.slot] += run.units
        limits = {"gpu": self.config.gpu_workers, "cpu": self.config.cpu_workers}
        blocked = set()
        for job_id in list(self.queue):
            rec = self.store.jobs[job_id]
            slot = KINDS[rec.kind].device if KINDS[rec.kind].device in limits else "cpu"
            units = job_units(rec.params) if slot == "gpu" else 1
            if self.executor.uses_slots and (slot in blocked or busy[slot] >= limits[slot]
                                             or (busy[slot] and busy[slot] + units > limits[slot])):
                blocked.add(slot)
                continue
            self.queue.remove(job_id)
            self._start(rec, slot, units)
            busy[slot] += units

    def _start(self, rec: JobRecord, slot: str, units: int = 1) -> None:
        try:
            handle = self.executor.start(rec, self.store.job_dir(rec.job_id))
        except Exception as exc:  # the executor could not take the job (e.g. the Ray cluster is gone)
            log.exception("starting job %s failed", rec.job_id)
            self.store.finish(rec, "failed", error={"code": "internal", "message": f"{type(exc).__name__}: {exc}",
                                                    "hint": "see the server's log"})
            self._broadcast_error(rec)
            self.watchers.pop(rec.job_id, None)
            return
        run = self.running[rec.job_id] = Running(rec, handle, slot, units=units)
        if handle.started:
            self._mark_running(run)

    def _mark_running(self, run: Running) -> None:
        rec = run.rec
        if rec.state != "queued":
            return
        rec.state = "running"
        rec.started = time.time()
        rec.node = run.handle.node
        self.store.save(rec)
        self._broadcast(rec, Message("progress", {"stage": "start", "fraction": 0.0, "message": "started"},
                                     job_id=rec.job_id))

    def _drain(self, run: Running) -> None:
        for event in run.handle.events():
            self._on_worker_event(run, event)

    def _on_worker_event(self, run: Running, event: dict) -> None:
        kind = event.pop("event", None)
        rec = run.rec
        if kind == "started":
            if run.cancel_deadline is None:
                self._mark_running(run)
            if rec.state == "running" and rec.node != run.handle.node:  # a retry started on another node
                rec.node = run.handle.node
                self.store.save(rec)
        elif kind == "retry":  # its node died; the executor runs it again (executor_ray.py)
            rec.retries, rec.node = int(event.get("retries", rec.retries + 1)), None
            self.store.save(rec)
            self._broadcast(rec, Message("progress", {"stage": "retry", "fraction": rec.fraction,
                                                      "message": str(event.get("message", ""))}, job_id=rec.job_id))
        elif kind == "progress":
            if run.cancel_deadline is not None:
                return
            rec.stage = event.get("stage", "")
            rec.fraction = float(event.get("fraction", 0.0))
            content = {k: event[k] for k in ("stage", "fraction", "message", "eta_s", "extra") if k in event}
            self._broadcast(rec, Message("progress", content, job_id=rec.job_id))
        else:
            run.final = {"event": kind, **event}

    def _reap(self) -> None:
        now = time.monotonic()
        for job_id, run in list(self.running.items()):
            if run.handle.alive():
                if run.cancel_deadline is not None and now > run.cancel_deadline:
                    self._kill(run)
                continue
            self._drain(run)
            del self.running[job_id]
            self._finish(run)

    def _finish(self, run: Running) -> None:
        rec, final = run.rec, run.final or {}
        if rec.started is not None and run.handle.node:  # where it ended (its "started" event may be lost)
            rec.node = run.handle.node
        if run.cancel_deadline is not None or final.get("event") == "cancelled":
            self.store.finish(rec, "cancelled")
            self._broadcast(rec, Message("cancelled", {"state": "cancelled"}, job_id=rec.job_id))
        elif final.get("event") == "result":
            try:
                self.store.finish(rec, "done", files=final.get("files"), arrays=final.get("arrays"),
                                  summary=final.get("summary"))
            except OSError as exc:
                self.store.finish(rec, "failed", error={"code": "internal", "message": f"result unreadable: {exc}",
                                                        "hint": ""})
                self._broadcast_error(rec)
                return
            for identity in self.watchers.get(rec.job_id, ()):
                self._send_result(identity, rec)
        else:
            if final.get("event") == "error":
                err = {k: final.get(k, "") for k in ("code", "message", "hint")}
            else:
                err = {"code": "job_crashed", "message": run.handle.death(),
                       "hint": f"see {self.store.job_dir(rec.job_id) / 'log.txt'}"}
            self.store.finish(rec, "failed", error=err)
            self._broadcast_error(rec)
        self.watchers.pop(rec.job_id, None)

    def _broadcast_error(self, rec: JobRecord) -> None:
        err = rec.error or {}
        self._broadcast(rec, error(err.get("code", "internal"), err.get("message", "failed"), err.get("hint", ""),
                                   job_id=rec.job_id))

    def _kill(self, run: Running) -> None:
        run.handle.kill()

    # -- outbound -----------------------------------------------------------------------
    def _send_result(self, identity: bytes, rec: JobRecord, parent: str | None = None) -> None:
        try:
            arrays = self.store.load_arrays(rec)
        except (OSError, ValueError) as exc:
            self._send(identity, error("internal", f"stored result of job {rec.job_id} is unreadable: {exc}",
                                       job_id=rec.job_id, parent=parent))
            return
        self._send(identity, Message("result", {"state": "done", "files": rec.files, "summary": rec.summary,
                                                "kind": rec.kind}, arrays, job_id=rec.job_id, parent=parent))

    def _broadcast(self, rec: JobRecord, msg: Message, also: bytes | None = None) -> None:
        targets = set(self.watchers.get(rec.job_id, ()))
        if also is not None:
            targets.add(also)
        for identity in targets:
            self._send(identity, msg)

    def _send(self, identity: bytes, msg: Message) -> None:
        try:
            frames = encode(msg)
        except ProtocolError as exc:
            frames = encode(error("internal", f"unencodable reply: {exc}", parent=msg.parent))
        try:
            self.socket.send_multipart([identity, *frames], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.warning("dropped a %s message to a slow client", msg.type)
        except zmq.ZMQError as exc:
            log.warning("send failed: %s", exc)

    def _expire_watchers(self) -> None:
        now = time.monotonic()
        dead = {i for i, t in self.last_seen.items() if now - t > 3 * HEARTBEAT_S}
        if not dead:
            return
        for identity in dead:
            del self.last_seen[identity]
        for ids in self.watchers.values():
            ids -= dead


def _confine_param(value, roots):
    if isinstance(value, list):
        return [str(confine(v, roots)) for v in value]
    return str(confine(value, roots))


def cache_key(kind: str, params: dict, path_params: tuple[str, ...], arrays: dict) -> str:
    h = hashlib.sha256()
    h.update(kind.encode() + b"\0")
    h.update(json.dumps(params, sort_keys=True, separators=(",", ":")).encode() + b"\0")
    for name in path_params:
        values = params.get(name)
        for value in values if isinstance(values, list) else [values] if values else []:
            h.update(f"{name}={value}\0".encode())
            hash_input(Path(value), h)
    for name in sorted(arrays):
        arr = arrays[name]
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}\0".encode())
        h.update(memoryview(arr).cast("B") if arr.flags.c_contiguous and arr.nbytes else arr.tobytes())
    return h.hexdigest()


def detect_device() -> tuple[str, float | None]:
    """The GPU's name and memory from nvidia-smi, or ("cpu", None) without one (no torch import)."""
    exe = shutil.which("nvidia-smi")
    if exe:
        try:
            out = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5).stdout.strip().splitlines()
            if out:
                name, mem = (s.strip() for s in out[0].split(",")[:2])
                return name, round(float(mem) / 1024, 1)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
    return "cpu", None


def make_executor(config: ServerConfig, cache_dir: Path) -> Executor:
    if not config.ray_address:
        return LocalExecutor()
    from backend.server.executor_ray import RayExecutor

    return RayExecutor(config.ray_address, cache_dir, job_cpus=config.ray_job_cpus,
                       gpu_resource=config.ray_gpu_resource, node_retries=config.ray_node_retries)


def _hint(code: str) -> str:
    return {"version_mismatch": "upgrade the older of the add-on and the backend",
            "too_large": "send large inputs as files inside the server's roots"}.get(code, "")
