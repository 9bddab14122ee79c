"""The ``splatstage`` command line.

Pipeline subcommands (poses, reconstruct, render, stereo, composite; ``backend.pipeline_cli``)
run in this process by default and on a job server with ``--backend tcp://HOST:PORT``. Errors
print one line and exit non-zero.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from backend import __version__
from backend.pipeline_cli import add_pipeline_parsers, connect, run_pipeline


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
    s.add_argument("--ray", metavar="ADDRESS", help="run the jobs on a Ray cluster: its head's HOST:PORT, 'auto', "
                   "or 'local' for a private one on this host (needs splatstage[cluster]; docs/cluster.md)")
    s.add_argument("--ray-job-cpus", type=float, default=1.0, help="CPUs a CPU job asks Ray for (default 1)")
    s.add_argument("--ray-gpu-resource", default="GPU",
                   help="Ray resource that stands for one GPU (default GPU: Ray's num_gpus; CPU: a CPU-only "
                        "cluster, GPU kinds take CPUs)")
    s.add_argument("--ray-retries", type=int, default=2, metavar="N",
                   help="times a job whose Ray node dies is run again on another node (default 2)")

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

    from backend.batch import add_arguments as add_batch_arguments

    add_batch_arguments(sub.add_parser("batch", help="run many shots (solve -> reconstruct -> composite) on a job "
                                                     "server; resumable (docs/cluster.md#batch)"))
    add_pipeline_parsers(sub)
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
        if args.command == "batch":
            from backend.batch import cmd_batch

            return cmd_batch(args)
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
                          curve_clients=args.curve_clients, ray_address=args.ray,
                          ray_job_cpus=args.ray_job_cpus, ray_gpu_resource=args.ray_gpu_resource,
                          ray_node_retries=args.ray_retries)
    server = Server(config)
    import signal

    def stop(*_):
        server.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    on = f", jobs on the Ray cluster at {args.ray}" if args.ray else ""
    print(f"splatstage serve: listening on {server.endpoint} (device {server.device}, cache {server.cache_dir}{on})",
          flush=True)
    server.serve_forever()
    return 0


def cmd_keys(args) -> int:
    from backend.server.security import generate_keys

    public, secret = generate_keys(args.dir, args.name)
    print(f"public key: {public}\nsecret key: {secret} (keep it private)")
    return 0


def cmd_jobs(args) -> int:
    with connect(args.backend) as client:
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
        for key in ("job_id", "kind", "state", "stage", "fraction", "error", "node"):
            if key in status:
                print(f"{key}: {status.get(key)}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
