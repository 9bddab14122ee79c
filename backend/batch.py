"""``splatstage batch SHOTS.json --backend ADDR``: many shots as one submission to a job server.

Each shot (footage, product, placement, options; the file format is
:mod:`shared_protocol.shots`) is a chain of dependent jobs, camera solve -> reconstruction ->
composite, whose files are fetched into the shot's own folder (``solve/``, ``reconstruction/``,
``composite/``) before the next job of the chain is submitted with those folders as its
inputs; the shots' chains run at the same time, so a server on a Ray cluster spreads them over
its nodes. The output folder must therefore be inside the server's ``--root`` folders (on a
cluster: shared storage at the same path on every node and on this host).

Resumable: each finished stage leaves ``batch.json`` in the shot's folder with the fingerprint
of its inputs (the footage's and product's contents, the job's parameters and the stage before
it); a re-run skips every stage whose fingerprint matches and whose folder is there, so
finished shots are skipped and a shot interrupted half-way goes on from its last finished
stage. A shot that fails (bad entry, failed job) is reported and the others carry on. A table
of the shots ends the run (also written as ``summary.json``); the exit status is 1 when any
shot failed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.fileutil import hash_input
from shared_protocol.atomic import atomic_write_json
from shared_protocol.shots import STAGE_DIRS, STAGES, load_shots, stage_params

STATE_FILE = "batch.json"


@dataclass
class ShotResult:
    name: str
    state: str = "queued"  # done | skipped | failed
    ran: list[str] = field(default_factory=list)  # stages run in this batch (the others were skipped)
    seconds: float = 0.0
    output: str = ""
    error: str = ""
    jobs: dict = field(default_factory=dict)  # stage -> job id


def add_arguments(parser) -> None:
    parser.add_argument("shots", type=Path, help="the shots file (JSON; docs/cluster.md#batch)")
    parser.add_argument("--backend", default="tcp://127.0.0.1:5555", help="job server address")
    parser.add_argument("--curve-server-key", type=Path, help="the server's public key file")
    parser.add_argument("--out", type=Path, help="output folder (default: the file's 'out', else <SHOTS>-out)")
    parser.add_argument("--parallel", type=int, default=0, metavar="N",
                        help="shots in flight at once (default: all; the server queues their jobs)")
    parser.add_argument("--timeout", type=float, default=24 * 3600.0, help="seconds to wait for each job")


def run_batch(shots_file: Path, backend: str, out: Path | None = None, parallel: int = 0,
              server_key: Path | None = None, timeout: float = 24 * 3600.0, stream=None,
              connect=None) -> list[ShotResult]:
    """Run every shot of ``shots_file`` on the server at ``backend``; returns one result per shot
    in file order and prints progress lines and the summary table to ``stream``.
    ``connect()`` makes a connected client (default: ``backend.pipeline_cli.connect``); one is
    made after the file is read, so an unreadable file or an unreachable server is one error
    before anything runs."""
    stream = stream or sys.stdout
    if connect is None:
        from backend.pipeline_cli import connect as connect_to

        def connect():
            return connect_to(backend, server_key, name="splatstage-batch")
    shots, default_out = load_shots(shots_file)
    connect().close()
    out = Path(out or default_out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = [ShotResult(s["name"]) for s in shots]
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            stream.write(line + "\n")
            stream.flush()

    todo = list(zip(shots, results))
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            with lock:
                if not todo:
                    return
                shot, result = todo.pop(0)
            _run_shot(shot, result, out / shot["name"], connect, timeout, say, stop)

    n = len(todo) if parallel <= 0 else min(parallel, len(todo))
    threads = [threading.Thread(target=worker, name=f"batch-{i}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        stop.set()
        _cancel_running(results, connect)
        raise
    stream.write(summary_table(results) + "\n")
    atomic_write_json(out / "summary.json", {"shots_file": str(Path(shots_file).resolve()),
                                             "shots": [asdict(r) for r in results]})
    return results


def _run_shot(shot: dict, result: ShotResult, shot_dir: Path, connect, timeout: float, say,
              stop: threading.Event) -> None:
    t0, stage = time.monotonic(), "check"
    if shot.get("error"):
        result.state, result.error = "failed", shot["error"]
        say(f"{shot['name']}: failed: {shot['error']}")
        return
    try:
        state = _read_state(shot_dir)
        fingerprint = _input_fingerprint(shot)
        client = None
        try:
            for stage in STAGES:
                params = stage_params(shot, stage, shot_dir)
                fingerprint = _fingerprint(fingerprint, stage, params)
                folder = shot_dir / STAGE_DIRS[stage]
                done = state.get(stage, {})
                if done.get("fingerprint") == fingerprint and folder.is_dir():
                    result.jobs[stage] = done.get("job_id", "")
                    continue
                if stop.is_set():
                    raise RuntimeError("the batch was interrupted")
                if client is None:
                    client = connect()
                say(f"{shot['name']}: {stage} submitted")
                t_stage = time.monotonic()
                job_id = result.jobs[stage] = client.submit(stage, params)
                msg = client.wait(job_id, timeout=timeout)
                _fetch_into(client, job_id, msg.content["files"], folder)
                state[stage] = {"fingerprint": fingerprint, "job_id": job_id,
                                "seconds": round(time.monotonic() - t_stage, 3),
                                "summary": _plain(msg.content.get("summary") or {})}
                # later stages were made from the old result: they run again
                for later in STAGES[STAGES.index(stage) + 1:]:
                    state.pop(later, None)
                atomic_write_json(shot_dir / STATE_FILE, {"shot": shot, "stages": state})
                result.ran.append(stage)
                say(f"{shot['name']}: {stage} done ({time.monotonic() - t_stage:.1f} s)")
        finally:
            if client is not None:
                client.close()
    except Exception as exc:  # noqa: BLE001 - one bad shot does not stop the others
        result.state = "failed"
        result.error = f"{stage}: {getattr(exc, 'message', None) or ' '.join(str(exc).split()) or type(exc).__name__}"
        result.seconds = round(time.monotonic() - t0, 3)
        say(f"{shot['name']}: failed: {result.error}")
        return
    result.state = "done" if result.ran else "skipped"
    result.seconds = round(time.monotonic() - t0, 3)
    result.output = str(shot_dir / STAGE_DIRS["composite"] / "composite.mp4")
    if not result.ran:
        say(f"{shot['name']}: skipped (finished before, same inputs and options)")


def _fetch_into(client, job_id: str, files: list[dict], folder: Path) -> None:
    """Download the job's files into a fresh folder beside ``folder``, then put it in place of
    ``folder`` (a rename), so the folder never holds a mix of two runs' files."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        for entry in files:
            client.fetch_file(job_id, entry["name"], tmp / entry["name"])
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        tmp.chmod(0o755)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_state(shot_dir: Path) -> dict:
    try:
        return dict(json.loads((shot_dir / STATE_FILE).read_text()).get("stages") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def _input_fingerprint(shot: dict) -> str:
    h = hashlib.sha256()
    for key in ("footage", "product"):
        h.update(f"{key}={shot[key]}\0".encode())
        hash_input(Path(shot[key]), h)
    return h.hexdigest()


def _fingerprint(previous: str, stage: str, params: dict) -> str:
    text = json.dumps([previous, stage, params], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool)) or v is None}


def _cancel_running(results: list[ShotResult], connect) -> None:
    """Ctrl-C: cancel the jobs still running (best effort)."""
    try:
        with connect() as client:
            for r in results:
                if r.state == "queued" and r.jobs:
                    client.cancel(list(r.jobs.values())[-1])
    except Exception:  # noqa: BLE001 - the server may be gone; nothing more to do
        pass


def summary_table(results: list[ShotResult]) -> str:
    rows = [("shot", "state", "ran", "seconds", "output or error")]
    for r in results:
        rows.append((r.name, r.state, " ".join(r.ran) or "-", f"{r.seconds:.1f}",
                     r.error if r.state == "failed" else r.output))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    counts = {s: sum(r.state == s for r in results) for s in ("done", "skipped", "failed")}
    lines.append(f"{len(results)} shots: {counts['done']} done, {counts['skipped']} skipped, "
                 f"{counts['failed']} failed")
    return "\n".join(lines)


def cmd_batch(args) -> int:
    results = run_batch(args.shots, args.backend, out=args.out, parallel=args.parallel,
                        server_key=args.curve_server_key, timeout=args.timeout)
    return 1 if any(r.state == "failed" for r in results) else 0
