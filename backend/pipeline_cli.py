"""The pipeline subcommands (poses, reconstruct, render, stereo, composite): their arguments,
a progress bar, and a run in this process or on a job server (``--backend``).

``backend.cli`` (the ``splatstage`` command) and ``backend.demo`` both build on this module;
it imports neither of them.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

PIPELINES = ("poses", "scale", "reconstruct", "render", "stereo", "composite", "product", "scene")


#: Seconds between progress lines in a log (stderr not a terminal); the environment variable
#: SPLATSTAGE_PROGRESS_INTERVAL sets another.
LOG_INTERVAL_S = 5.0


def log_interval() -> float:
    try:
        return max(0.0, float(os.environ.get("SPLATSTAGE_PROGRESS_INTERVAL", LOG_INTERVAL_S)))
    except ValueError:
        return LOG_INTERVAL_S


class Bar:
    """Progress on stderr: a one-line bar on a terminal; in a log (stderr not a terminal) a line
    when a stage starts and then every ``interval`` seconds, with the stage's fraction, its
    message, the stage's rate-based ETA, the whole job's ETA and the time so far. A warning
    always gets a line of its own."""

    def __init__(self, label: str, interval: float | None = None, stream=None, clock=time.monotonic):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.stage = None
        self.interval = log_interval() if interval is None else interval
        self.clock = clock
        self.start = clock()
        self.last_line = -float("inf")

    def __call__(self, event: dict) -> None:
        frac = float(event.get("fraction", 0.0))
        stage = event.get("stage", "")
        extra = event.get("extra") or {}
        eta, stage_eta = event.get("eta_s"), extra.get("stage_eta_s")
        if extra.get("warning"):
            self.stream.write(("\n" if self.tty and self.stage is not None else "")
                              + f"{self.label}: warning: {extra['warning']}\n")
        if self.tty:
            eta_txt = f" eta {_fmt_s(eta)}" if eta is not None else ""
            width = 28
            fill = int(frac * width)
            line = f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {frac * 100:5.1f}% {stage}: {event.get('message', '')}"
            self.stream.write(line[:118].ljust(118) + eta_txt)
        else:
            now = self.clock()
            if stage != self.stage or now - self.last_line >= self.interval:
                self.last_line = now
                self.stream.write(self._log_line(event, stage, frac, eta, stage_eta, now) + "\n")
        self.stream.flush()
        self.stage = stage

    def _log_line(self, event, stage, frac, eta, stage_eta, now) -> str:
        parts = [f"{self.label}: {stage} {float(event.get('stage_fraction', frac)) * 100:.0f}%"]
        if event.get("message") and event["message"] != stage:
            parts[0] += f" ({event['message']})"
        if stage_eta is not None:
            parts.append(f"stage eta {_fmt_s(stage_eta)}")
        parts.append(f"overall {frac * 100:.0f}%" + (f", eta {_fmt_s(eta)}" if eta is not None else ""))
        parts.append(f"elapsed {_fmt_s(now - self.start)}")
        return "; ".join(parts)

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _fmt_s(s: float) -> str:
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def load_job_module(kind: str):
    """``backend.jobs.<kind>``, or None when that kind is not part of this installation."""
    try:
        return importlib.import_module(f"backend.jobs.{kind}")
    except ModuleNotFoundError as exc:
        if exc.name == f"backend.jobs.{kind}":
            return None
        raise


def add_pipeline_parsers(sub) -> None:
    """One subparser per pipeline kind on ``sub`` (an ``add_subparsers`` object)."""
    from backend.jobs import KINDS

    for kind in PIPELINES:
        mod = load_job_module(kind)
        help_text = KINDS[kind].description if mod else "(not available in this installation)"
        sp = sub.add_parser(kind, help=help_text)
        sp.add_argument("-o", "--output", type=Path, required=True, help="output folder (or file)")
        sp.add_argument("--backend", help="job server address, e.g. tcp://127.0.0.1:5555 (default: in-process)")
        sp.add_argument("--curve-server-key", type=Path, help="the server's public key file")
        if mod is not None:
            mod.add_arguments(sp)


def run_argv(argv: list[str]) -> int:
    """Run one pipeline subcommand given as command-line words (``["poses", CLIP, "-o", DIR]``);
    errors are raised (JobError, BackendError, OSError, ValueError) for the caller to report."""
    p = argparse.ArgumentParser(prog="splatstage")
    sub = p.add_subparsers(dest="command", required=True)
    add_pipeline_parsers(sub)
    args = p.parse_args(argv)
    return run_pipeline(args.command, args)


def connect(address: str, server_key: Path | None = None, name: str = "splatstage-cli"):
    """A connected :class:`shared_protocol.client.Client` (CURVE when ``server_key`` is given)."""
    from shared_protocol.client import Client

    key = None
    if server_key is not None:
        from backend.server.security import load_keys

        key = load_keys(server_key)[0]
    client = Client(address, server_public_key=key, client_name=name)
    client.connect()
    return client


def run_pipeline(kind: str, args) -> int:
    from backend.progress import JobError, Progress

    mod = load_job_module(kind)
    if mod is None:
        raise JobError(f"the {kind} pipeline is not available in this installation", "unknown_kind")
    params = mod.params_from_args(args)
    output = Path(args.output).resolve()
    main_output = getattr(mod, "MAIN_OUTPUT", None)
    bar = Bar(kind)
    target = output if main_output is None else Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=_parent(output)))
    try:
        if args.backend:
            summary = _run_remote(kind, params, target, args, bar)
        else:
            from backend.runner import run_job

            if main_output is not None:
                target.rmdir()
            summary = run_job(kind, params, target, Progress(callback=bar)).summary
        bar.done()
        if main_output is not None:
            os.replace(target / main_output, output)
    finally:
        if main_output is not None:
            shutil.rmtree(target, ignore_errors=True)
    print(f"{kind}: done; results in {output}")
    for key, value in (summary or {}).items():
        if isinstance(value, (int, float, str, bool)):
            print(f"  {key}: {value}")
    return 0


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


def _run_remote(kind: str, params: dict, out_dir: Path, args, bar: Bar) -> dict:
    from backend.runner import publish

    with connect(args.backend, args.curve_server_key) as client:
        job_id = client.submit(kind, params)
        try:
            result = client.wait(job_id, on_progress=bar)
        except KeyboardInterrupt:
            client.cancel(job_id)
            raise
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=_parent(out_dir)))
        try:
            for entry in result.content["files"]:
                client.fetch_file(job_id, entry["name"], tmp / entry["name"])
            publish(tmp, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return result.content.get("summary", {})
