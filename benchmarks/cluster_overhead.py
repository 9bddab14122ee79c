"""What running a job on Ray costs over a local worker process: the same short jobs, one at a
time, on a server with local workers and on one with ``--ray local`` (a private Ray instance on
this host, one node). Per job: submit -> result on the client, median over ``--jobs`` jobs.

    python benchmarks/cluster_overhead.py --machine cpu-2core

Writes ``benchmarks/results/cluster_overhead-<machine>.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.server.launch import ServerProcess  # noqa: E402


def run(extra: tuple[str, ...], jobs: int, seconds: float, tmp: Path) -> dict:
    t0 = time.perf_counter()
    server = ServerProcess(tmp, *extra)
    server.start()
    start_s = time.perf_counter() - t0
    try:
        c = server.client(timeout=60)
        times = []
        for i in range(jobs + 1):  # the first job warms up (imports, a first worker): not counted
            t = time.perf_counter()
            job = c.submit("sleep", {"seconds": seconds, "steps": 1 + i})  # distinct: never a cache hit
            c.wait(job, timeout=300)
            if i:
                times.append(time.perf_counter() - t)
        c.close()
    finally:
        server.stop()
    return {"server_start_s": round(start_s, 3), "job_s_median": round(statistics.median(times), 3),
            "job_s": [round(t, 3) for t in times]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machine", required=True)
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=0.5, help="each sleep job's own run time")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        local = run((), args.jobs, args.seconds, Path(tmp) / "local")
        on_ray = run(("--ray", "local"), args.jobs, args.seconds, Path(tmp) / "ray")
    overhead = round(on_ray["job_s_median"] - local["job_s_median"], 3)
    out = {"machine": args.machine, "jobs": args.jobs, "job_seconds": args.seconds,
           "load_average_1min": round(os.getloadavg()[0], 2),
           "local": local, "ray_local": on_ray, "ray_overhead_s_median": overhead}
    results = ROOT / "benchmarks" / "results"
    name = f"cluster_overhead-{args.machine}"
    (results / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    (results / f"{name}.md").write_text(
        f"# Ray executor overhead ({args.machine})\n\n"
        f"{args.jobs} `sleep` jobs of {args.seconds} s, one at a time, submit -> result (medians; "
        f"load average {out['load_average_1min']} while measuring):\n\n"
        "| executor | server start (s) | per job (s) |\n|---|---|---|\n"
        f"| local worker processes | {local['server_start_s']} | {local['job_s_median']} |\n"
        f"| `--ray local` | {on_ray['server_start_s']} | {on_ray['job_s_median']} |\n\n"
        f"Ray's overhead per job: {overhead} s.\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
