"""The ``splatstage`` command line.

Pipeline subcommands (poses, reconstruct, render, stereo, composite) run in this process by
default and on a job server with ``--backend tcp://HOST:PORT``. Errors print one line and
exit non-zero.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from backend import __version__

PIPELINES = ("poses", "reconstruct", "render", "stereo", "composite")


class Bar:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, label: str):
        self.label = label
        self.tty = sys.stderr.isatty()
        self.stage = None

    def __call__(self, event: dict) -> None:
        frac = float(event.get("fraction", 0.0))
        stage = event.get("stage", "")
        eta = event.get("eta_s")
        eta_txt = f" eta {_fmt_s(eta)}" if eta is not None else ""
        if self.tty:
            width = 28
            fill = int(frac * width)
            line = f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {frac * 100:5.1f}% {stage}: {event.get('message', '')}"
            sys.stderr.write(line[:118].ljust(118) + eta_txt)
            sys.stderr.flush()
        elif stage != self.stage:
            sys.stderr.write(f"{self.label}: {stage} ({frac * 100:.0f}%){eta_txt}\n")
        self.stage = stage

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _fmt_s(s: float) -> str:
    s = int(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _load_job_module(kind: str):
    try:
        return importlib.import_module(f"backend.jobs.{kind}")
    except ModuleNotFoundError as exc:
        if exc.name == f"backend.jobs.{kind}":
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="splatstage", description="Video to matchmoved, reconstructed 3D scenes.")
    p.add_argument("--version", action="version", version=f"splatstage {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the job server")
    s.add_argument("--bind", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint (default: loopback)")
    s.add_argument("--cache", type=Path, default=default_cache(), help="job store folder")
    s.add_argument("--root", type=Path, action="append", help="folder inputs may come from (repeatable; default: cwd)")
    s.add_argument("--gpu-workers", type=int, default=1)
    s.add_argument("--cpu-workers", type=int, default=1)
    s.add_argument("--max-message-mib", type=int, default=256)
    s.add_argument("--curve-secret", type=Path, help="server key file (from 'splatstage keys')")
    s.add_argument("--curve-clients", type=Path, help="folder of authorised client public keys")

    k = sub.add_parser("keys", help="generate a CURVE key pair")
    k.add_argument("--dir", type=Path, default=default_cache() / "keys")
    k.add_argument("--name", default="server")

    j = sub.add_parser("jobs", help="list, inspect, cancel or fetch jobs on a server")
    j.add_argument("job_id", nargs="?")
    j.add_argument("--backend", default="tcp://127.0.0.1:5555")
    j.add_argument("--cancel", action="store_true")
    j.add_argument("--fetch", type=Path, metavar="DIR", help="download the job's files into DIR")
    j.add_argument("--shutdown", action="store_true", help="stop the local server (reads its admin token)")
    j.add_argument("--cache", type=Path, default=default_cache(), help="the server's cache (for --shutdown)")

    d = sub.add_parser("demo", help="run the main job on the embedded sample")
    d.add_argument("-o", "--output", type=Path, default=Path("out/demo"))
    d.add_argument("--backend", help="run on a job server instead of in this process")

    for kind in PIPELINES:
        mod = _load_job_module(kind)
        from backend.jobs import KINDS

        help_text = KINDS[kind].description if mod else "(not available in this installation)"
        sp = sub.add_parser(kind, help=help_text)
        sp.add_argument("-o", "--output", type=Path, required=True, help="output folder (or file)")
        sp.add_argument("--backend", help="job server address, e.g. tcp://127.0.0.1:5555 (default: in-process)")
        sp.add_argument("--curve-server-key", type=Path, help="the server's public key file")
        if mod is not None:
            mod.add_arguments(sp)
    return p


def default_cache() -> Path:
    if os.environ.get("SPLATSTAGE_CACHE"):
        return Path(os.environ["SPLATSTAGE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "splatstage"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose or args.command == "serve" else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from backend.progress import JobError
    from shared_protocol.client import BackendError

    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "keys":
            return cmd_keys(args)
        if args.command == "jobs":
            return cmd_jobs(args)
        if args.command == "demo":
            from backend.demo import run_demo

            return run_demo(args.output, backend=args.backend)
        return run_pipeline(args.command, args)
    except (JobError, BackendError) as exc:
        hint = f" ({exc.hint})" if getattr(exc, "hint", "") else ""
        print(f"splatstage {args.command}: error: {exc.message}{hint}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"splatstage {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"splatstage {args.command}: cancelled", file=sys.stderr)
        return 130


def cmd_serve(args) -> int:
    from backend.server.server import Server, ServerConfig

    config = ServerConfig(bind=args.bind, cache_dir=args.cache, roots=args.root or [Path.cwd()],
                          gpu_workers=args.gpu_workers, cpu_workers=args.cpu_workers,
                          max_message_bytes=args.max_message_mib << 20, curve_secret=args.curve_secret,
                          curve_clients=args.curve_clients)
    server = Server(config)
    import signal

    def stop(*_):
        server.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"splatstage serve: listening on {server.endpoint} (device {server.device}, cache {server.cache_dir})",
          flush=True)
    server.serve_forever()
    return 0


def cmd_keys(args) -> int:
    from backend.server.security import generate_keys

    public, secret = generate_keys(args.dir, args.name)
    print(f"public key: {public}\nsecret key: {secret} (keep it private)")
    return 0


def _client(address: str, server_key: Path | None = None):
    from shared_protocol.client import Client

    key = None
    if server_key is not None:
        from backend.server.security import load_keys

        key = load_keys(server_key)[0]
    client = Client(address, server_public_key=key, client_name="splatstage-cli")
    client.connect()
    return client


def cmd_jobs(args) -> int:
    with _client(args.backend) as client:
        if args.shutdown:
            client.shutdown((args.cache / "admin.token").read_text().strip())
            print("server stopped")
            return 0
        if not args.job_id:
            for job in client.jobs():
                print(f"{job['job_id']}  {job['kind']:<11} {job['state']:<9} {job['fraction'] * 100:5.1f}%  {job['stage']}")
            return 0
        if args.cancel:
            client.cancel(args.job_id)
            for msg in client.events(args.job_id, timeout=10):
                if msg.type in ("cancelled", "result", "error"):
                    print(f"{args.job_id}: {msg.type}")
            return 0
        if args.fetch:
            result = client.fetch(args.job_id)
            for entry in result.content["files"]:
                client.fetch_file(args.job_id, entry["name"], args.fetch / entry["name"])
            print(f"fetched {len(result.content['files'])} files into {args.fetch}")
            return 0
        status = client.status(args.job_id)
        for key in ("job_id", "kind", "state", "stage", "fraction", "error"):
            print(f"{key}: {status.get(key)}")
        return 0


def run_pipeline(kind: str, args) -> int:
    from backend.progress import JobError, Progress

    mod = _load_job_module(kind)
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

    with _client(args.backend, args.curve_server_key) as client:
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


if __name__ == "__main__":
    sys.exit(main())
