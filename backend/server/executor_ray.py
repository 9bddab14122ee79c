"""Jobs as Ray tasks on a Ray cluster (``splatstage serve --ray ADDRESS|local``).

Each job is one Ray task (``max_calls=1``: a fresh worker process per job, as with local
workers, so a crash, a leaked CUDA context or a redirected log stays with its job) asking for
the resources of its kind (:func:`job_resources`); Ray queues it until a node has room. The
task reports ``started`` (with its node id) and its progress to one small actor,
:class:`ProgressHub`, which the server drains once per step; its return value is the job's
final event. Cancel is ``ray.cancel`` (a ``KeyboardInterrupt`` in the job, which deletes its
partial output), then ``ray.cancel(force=True)`` (the worker process is killed) once the
server's grace period has passed.

A job whose node dies (``NodeDiedError``, or its node no longer alive) is submitted again, at
most ``node_retries`` times, after its partial output is removed; Ray places it on a live node
and a reconstruction resumes from the checkpoint it left in the server's cache. A worker that
crashes on a live node (a segfault, ``os._exit``) is not retried: it would crash again.

Data never travels through Ray: inputs are paths under the server's ``--root`` folders and
results are written into the job's folder in the server's cache, so both must be shared
storage mounted at the same path on every node (docs/cluster.md). Only job parameters, JSON
event strings and the final event cross the cluster.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from backend import __version__
from backend.jobs import KINDS
from backend.server.executor import Executor, JobHandle, job_units
from backend.server.store import JobRecord, discard_output

log = logging.getLogger("splatstage.server.ray")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def job_resources(kind: str, params: dict, job_cpus: float = 1.0, gpu_resource: str = "GPU") -> dict:
    """Ray task options for a job: CPU kinds (``poses``, ``scale``, ``sleep``) ask for ``job_cpus``
    CPUs; GPU kinds (``reconstruct``, ``render``, ``stereo``) for N GPUs (their ``gpus`` parameter,
    default 1) and no CPU slot; ``composite`` (a solve and a render) for the sum of both.
    ``gpu_resource`` names the Ray resource that stands for one GPU ("GPU": Ray's ``num_gpus``);
    "CPU" makes a CPU-only cluster, where GPU kinds run on the CPU path and ask for N CPUs (a
    composite, whose stages run one after the other, for the larger of its two)."""
    spec = KINDS.get(kind)
    gpus = job_units(params) if spec is not None and spec.device == "gpu" else 0
    if gpu_resource == "CPU":
        return {"num_cpus": max(job_cpus, gpus) if kind == "composite" else (gpus or job_cpus)}
    cpus = job_cpus if gpus == 0 or kind == "composite" else 0
    opts: dict = {"num_cpus": cpus}
    if gpu_resource == "GPU":
        opts["num_gpus"] = gpus
    elif gpus:
        opts["resources"] = {gpu_resource: gpus}
    return opts


class ProgressHub:
    """Collects the running jobs' events (JSON strings) until the server drains them. Calls from
    one task run in the order it made them, so a task's last, synchronous call guarantees that
    every event it sent before is here."""

    def __init__(self):
        self.events: list[tuple[str, str]] = []

    def put(self, job_id: str, event: str) -> None:
        self.events.append((job_id, event))

    def drain(self) -> list[tuple[str, str]]:
        out, self.events = self.events, []
        return out

    def ping(self) -> bool:
        return True


def run_on_node(kind: str, params: dict, job_dir: str, job_id: str, hub, cache_dir: str, version: str) -> dict:
    """The Ray task: runs one job on whichever node Ray chose; returns its final event."""
    import ray

    from backend.server.worker import encode_event, redirect_output, run_to_final

    node = ray.get_runtime_context().get_node_id()

    def send(event: dict) -> None:  # best effort: the job's final event is the task's return value
        try:
            hub.put.remote(job_id, encode_event(event).decode())
        except ray.exceptions.RayError:
            pass

    send({"event": "started", "node": node})
    job = Path(job_dir)
    final = _node_problem(kind, params, job, node, version)
    if final is None:
        os.environ["SPLATSTAGE_CACHE"] = cache_dir  # checkpoints and builds, as for local workers
        redirect_output(job)
        try:
            final = run_to_final(kind, params, job, send)
        except KeyboardInterrupt:  # ray.cancel: the runner has already removed the partial output
            final = {"event": "cancelled"}
    try:
        ray.get(hub.ping.remote(), timeout=60)  # every event sent above has reached the hub
    except ray.exceptions.RayError:  # the hub is being restarted (its node died): progress events were lost
        pass
    return {**final, "node": node}


def _node_problem(kind: str, params: dict, job: Path, node: str, version: str) -> dict | None:
    """An error event when this node cannot run the job: another splatstage version, or the
    job's folder or inputs not mounted here."""
    where = f"on Ray node {node[:12]}"
    if version != __version__:
        return {"event": "error", "code": "job_failed",
                "message": f"{where} runs splatstage {__version__}, the server {version}",
                "hint": "install the same splatstage version on every node"}
    missing = [] if job.is_dir() else [str(job)]
    spec = KINDS.get(kind)
    for name in spec.path_params if spec else ():
        values = params.get(name)
        for value in values if isinstance(values, list) else [values] if values else []:
            if not Path(value).exists():
                missing.append(str(value))
    if missing:
        return {"event": "error", "code": "job_failed", "message": f"{missing[0]} does not exist {where}",
                "hint": "the server's cache and --root folders must be shared storage mounted at the same "
                        "path on every node (docs/cluster.md)"}
    return None


class RayHandle(JobHandle):
    def __init__(self, kind: str, ref, submit=None, job_dir: Path | None = None):
        self.kind, self.ref = kind, ref
        self.submit, self.job_dir = submit, job_dir  # submit(): a new task for the job (a retry)
        self.started = False
        self.node = None
        self.done = ref is None
        self.pending: list[dict] = []
        self.why = f"the {kind} worker process died"
        self.retries = 0
        self.lost_nodes: list[str] = []
        self.cancelling = False  # a cancelled job is not run again when its node dies
        self.opts: dict = {}  # the Ray resources it asks for

    def events(self) -> list[dict]:
        out, self.pending = self.pending, []
        return out

    def alive(self) -> bool:
        return not self.done

    def terminate(self) -> None:
        import ray

        self.cancelling = True
        if not self.done:
            ray.cancel(self.ref, force=False)

    def kill(self) -> None:
        import ray

        if not self.done:
            ray.cancel(self.ref, force=True)

    def death(self) -> str:
        return self.why


class RayExecutor(Executor):
    uses_slots = False  # Ray queues each job until a node has the resources it asks for

    def __init__(self, address: str, cache_dir: Path, job_cpus: float = 1.0, gpu_resource: str = "GPU",
                 node_retries: int = 2):
        self.ray = connect(address)
        self.node_retries = max(0, int(node_retries))
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.cache_dir = str(cache_dir)
        self.job_cpus = float(job_cpus)
        self.gpu_resource = gpu_resource
        here = ray.get_runtime_context().get_node_id()
        self.hub = ray.remote(ProgressHub).options(
            num_cpus=0, max_restarts=-1,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=True)).remote()
        ray.get(self.hub.ping.remote(), timeout=120)
        self.task = ray.remote(max_calls=1, max_retries=0, retry_exceptions=False)(run_on_node)
        self.handles: dict[str, RayHandle] = {}
        self._nodes: tuple[float, list[dict]] = (0.0, [])

    def start(self, rec: JobRecord, job_dir: Path) -> JobHandle:
        opts = job_resources(rec.kind, rec.params, self.job_cpus, self.gpu_resource)
        if not self._fits(opts):
            handle = RayHandle(rec.kind, None)
            handle.pending.append({"event": "error", "code": "job_failed",
                                   "message": f"no node of the Ray cluster has {_describe(opts)} for this {rec.kind} job",
                                   "hint": "add nodes with those resources or ask for fewer GPUs"})
            return handle

        def submit():
            return self.task.options(**opts, name=f"splatstage-{rec.kind}-{rec.job_id[:8]}").remote(
                rec.kind, rec.params, str(job_dir), rec.job_id, self.hub, self.cache_dir, __version__)

        handle = self.handles[rec.job_id] = RayHandle(rec.kind, submit(), submit, job_dir)
        handle.opts = opts
        return handle

    def poll(self) -> None:
        if not self.handles:
            return
        ray = self.ray
        refs = [h.ref for h in self.handles.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        try:
            drained = ray.get(self.hub.drain.remote(), timeout=10)
        except ray.exceptions.RayError as exc:
            log.warning("progress hub unreachable: %s", exc)
            drained = []
        for job_id, raw in drained:
            handle = self.handles.get(job_id)
            if handle is None:
                continue
            event = json.loads(raw)
            if event.get("event") == "started":
                handle.node, handle.started = event.get("node"), True
            handle.pending.append(event)
        ready = set(ready)
        for job_id, handle in list(self.handles.items()):
            if handle.ref in ready:
                final = self._final(handle)
                if final is None:  # its node died and the job was submitted again
                    continue
                handle.pending.extend(final)
                handle.done = True
                del self.handles[job_id]

    def _final(self, handle: RayHandle) -> list[dict] | None:
        ray = self.ray
        try:
            final = ray.get(handle.ref)
        except ray.exceptions.TaskCancelledError:
            return [{"event": "cancelled"}]
        except ray.exceptions.RayTaskError as exc:  # cannot happen unless the task's own code broke
            first = " ".join(str(exc.cause if hasattr(exc, "cause") else exc).split())[:300]
            return [{"event": "error", "code": "internal", "message": first, "hint": ""}]
        except ray.exceptions.RayError as exc:  # the worker process or its node died
            where = f" on Ray node {handle.node[:12]}" if handle.node else ""
            if isinstance(exc, ray.exceptions.NodeDiedError) or not self._node_alive(handle.node):
                return self._retry(handle)
            first = " ".join(str(exc).split())[:200]
            handle.why = f"the {handle.kind} worker process died{where} ({type(exc).__name__}: {first})"
            return []
        handle.node = final.pop("node", handle.node)
        return [final]

    def _retry(self, handle: RayHandle) -> list[dict] | None:
        """The job's node died: submit it again (None) unless it has had its retries; then []
        (the server reports ``job_crashed`` with :meth:`RayHandle.death`)."""
        lost = handle.node[:12] if handle.node else "unknown"
        handle.lost_nodes.append(lost)
        if handle.retries >= self.node_retries or handle.submit is None or handle.cancelling:
            tried = len(handle.lost_nodes)
            handle.why = (f"the Ray node running this {handle.kind} job died {tried} time{'s' * (tried > 1)} "
                          f"(nodes {', '.join(handle.lost_nodes)}); gave up after {handle.retries} "
                          f"retr{'ies' if handle.retries != 1 else 'y'}")
            return []
        self._nodes = (0.0, [])  # what is left of the cluster, not the view from before the loss
        if not self._fits(handle.opts, lost=handle.node):
            handle.why = (f"the Ray node running this {handle.kind} job died (node {lost}) and no live node has "
                          f"{_describe(handle.opts)} to run it again")
            return []
        handle.retries += 1
        if handle.job_dir is not None:
            discard_output(handle.job_dir)
        log.warning("Ray node %s died while running a %s job; retry %d of %d", lost, handle.kind,
                    handle.retries, self.node_retries)
        handle.pending.append({"event": "retry", "retries": handle.retries, "lost_node": handle.node,
                               "message": f"Ray node {lost} died; running the job again on another node "
                                          f"(retry {handle.retries} of {self.node_retries})"})
        handle.node = None
        handle.ref = handle.submit()
        return None

    def _node_alive(self, node: str | None) -> bool:
        if node is None:
            return True
        try:
            return any(n["NodeID"] == node and n.get("Alive") for n in self.ray.nodes())
        except Exception:  # noqa: BLE001 (cluster unreachable: treat as a crash, not a node loss)
            return True

    def _fits(self, opts: dict, lost: str | None = None) -> bool:
        """Whether any live node (other than ``lost``, which the cluster may not have marked dead
        yet) could ever hold the job (else Ray would queue it forever)."""
        need = {"CPU": opts.get("num_cpus", 0), "GPU": opts.get("num_gpus", 0), **opts.get("resources", {})}
        for max_age in (5.0, 0.5):  # a cached view of the nodes, refreshed before saying no (a node may have joined)
            t, nodes = self._nodes
            if time.monotonic() - t > max_age:
                nodes = [(n["NodeID"], n["Resources"]) for n in self.ray.nodes() if n.get("Alive")]
                self._nodes = (time.monotonic(), nodes)
            if any(all(res.get(k, 0) >= v for k, v in need.items() if v) for node, res in nodes if node != lost):
                return True
        return False

    def close(self) -> None:
        ray = self.ray
        for handle in self.handles.values():
            try:
                ray.cancel(handle.ref, force=True)
            except Exception:  # noqa: BLE001 (already finished or its node is gone)
                pass
        self.handles.clear()
        ray.shutdown()


def _describe(opts: dict) -> str:
    need = {"CPU": opts.get("num_cpus", 0), "GPU": opts.get("num_gpus", 0), **opts.get("resources", {})}
    return " and ".join(f"{v:g} {k}" for k, v in need.items() if v) or "no resources"


def connect(address: str):
    """``ray.init`` for the server: ``local`` starts a private single-node cluster bound to
    127.0.0.1; otherwise ``auto`` or ``HOST:PORT`` of a running cluster's head (the server must
    run on one of its nodes). A loopback address means a cluster on this host: Ray is then told
    to keep every address on loopback."""
    host = address.rsplit(":", 1)[0].strip("[]") if address not in ("local", "auto") else ""
    loopback = address == "local" or host in LOOPBACK
    if loopback:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep 127.0.0.1 as it is
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray: pip install 'splatstage[cluster]'") from None
    kw = {"log_to_driver": False, "namespace": "splatstage"}
    if loopback:
        kw["_node_ip_address"] = "127.0.0.1"
    if address == "local":
        ray.init(address="local", include_dashboard=False, **kw)
    else:
        ray.init(address=address, **kw)
    return ray
