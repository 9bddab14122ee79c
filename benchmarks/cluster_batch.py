"""Throughput of ``splatstage batch`` on a Ray cluster of 1, 2 and 3 nodes of one CPU each, and
the Ray executor's overhead per job against local worker processes.

The cluster is ``ray.cluster_utils.Cluster`` on this host (every process on 127.0.0.1): a head
without CPUs (the job server's node) and N nodes of one CPU each; the server runs with
``--ray-gpu-resource CPU`` (a CPU-only cluster: every job takes one CPU). The batch is 12 short
shots of the sample clip (backend/samples), the CPU path at preview settings made smaller still:
shot i solves the first 10 + i frames at 160 px, trains 10 steps at 120 px and composites
2 frames at 120 px. Every configuration starts from an empty server cache and output folder, so
no job is answered from a cache. Shots per minute = 12 / the batch's wall time.

The overhead: ``sleep`` jobs of 0.5 s one at a time, submit -> result, median, on local worker
processes and on a one-node Ray cluster (``benchmarks/cluster_overhead.py``'s measurement).

    python benchmarks/cluster_batch.py --machine cpu-2core

Writes ``benchmarks/results/cluster_batch-<machine>.{json,md}``.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray keeps 127.0.0.1 addresses as they are

from backend.batch import run_batch  # noqa: E402
from backend.server.launch import ServerProcess  # noqa: E402

SAMPLES = ROOT / "backend" / "samples"


def shots_file(folder: Path, n: int) -> Path:
    shots = [{"name": f"sh{10 * (i + 1):03d}", "footage": str(SAMPLES / "sample_clip.mp4"),
              "product": str(SAMPLES / "product.glb"),
              "options": {"preview": True, "frames": 10 + i, "device": "cpu",
                          "poses": {"max_size": 160},
                          "reconstruct": {"steps": 10, "max_size": 120},
                          "composite": {"max_frames": 2, "render_size": 120}}} for i in range(n)]
    path = folder / "shots.json"
    path.write_text(json.dumps({"version": 1, "out": "out", "shots": shots}, indent=1))
    return path


def start_cluster(nodes: int):
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1",
                                                      "include_dashboard": False})
    for _ in range(nodes):
        c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    c.wait_for_nodes()
    return c


def batch_on(nodes: int, shots: int, tmp: Path) -> dict:
    tmp.mkdir(parents=True)
    cluster = start_cluster(nodes)
    server = ServerProcess(tmp, "--root", str(SAMPLES), "--ray", cluster.address, "--ray-gpu-resource", "CPU")
    try:
        server.start()
        path = shots_file(server.root, shots)
        t0 = time.perf_counter()
        results = run_batch(path, server.address, stream=io.StringIO())
        wall = time.perf_counter() - t0
        c = server.client(timeout=60)
        jobs = c.jobs(limit=1000)
        c.close()
    finally:
        server.stop()
        cluster.shutdown()
    states = [r.state for r in results]
    per_node: dict[str, int] = {}
    for j in jobs:
        per_node[j.get("node", "?")[:12]] = per_node.get(j.get("node", "?")[:12], 0) + 1
    return {"nodes": nodes, "wall_s": round(wall, 2), "shots_per_minute": round(shots * 60 / wall, 2),
            "shots_done": states.count("done"), "shots_failed": states.count("failed"),
            "errors": [r.error for r in results if r.state == "failed"], "jobs": len(jobs),
            "jobs_per_node": sorted(per_node.values(), reverse=True),
            "shot_seconds_median": round(statistics.median(r.seconds for r in results), 2)}


def sleep_jobs(extra: tuple[str, ...], jobs: int, tmp: Path) -> float:
    from benchmarks.cluster_overhead import run

    return run(extra, jobs, 0.5, tmp)["job_s_median"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machine", required=True)
    ap.add_argument("--shots", type=int, default=12)
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--overhead-jobs", type=int, default=8)
    args = ap.parse_args()
    load = [round(os.getloadavg()[0], 2)]
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for n in args.nodes:
            runs.append(batch_on(n, args.shots, Path(tmp) / f"nodes{n}"))
            load.append(round(os.getloadavg()[0], 2))
            print(json.dumps(runs[-1]), flush=True)
        cluster = start_cluster(1)
        try:
            local = sleep_jobs((), args.overhead_jobs, Path(tmp) / "local")
            on_ray = sleep_jobs(("--ray", cluster.address, "--ray-gpu-resource", "CPU"), args.overhead_jobs,
                                Path(tmp) / "ray")
        finally:
            cluster.shutdown()
    overhead = {"jobs": args.overhead_jobs, "job_seconds": 0.5, "local_job_s_median": local,
                "ray_job_s_median": on_ray, "ray_overhead_s": round(on_ray - local, 3)}
    out = {"machine": args.machine, "shots": args.shots, "load_average_1min": load, "runs": runs,
           "overhead": overhead}
    results = ROOT / "benchmarks" / "results"
    name = f"cluster_batch-{args.machine}"
    (results / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    rows = "".join(f"| {r['nodes']} | {r['wall_s']} | {r['shots_per_minute']} | {r['shots_done']}/{args.shots} "
                   f"| {r['shot_seconds_median']} |\n" for r in runs)
    (results / f"{name}.md").write_text(
        f"# Batch throughput on a Ray cluster ({args.machine})\n\n"
        f"{args.shots} short shots of the sample clip (solve 10-21 frames at 160 px, 10 training steps "
        "at 120 px, a 2-frame composite at 120 px), all submitted at once by `splatstage batch` to a "
        "server with `--ray-gpu-resource CPU` on a `ray.cluster_utils.Cluster` of N nodes of one CPU "
        f"each on this host (load average {', '.join(map(str, load))} before and after each run):\n\n"
        "| nodes | batch wall time (s) | shots per minute | shots done | shot wall time, median (s) |\n"
        "|---|---|---|---|---|\n" + rows +
        f"\nRay executor overhead per job ({args.overhead_jobs} `sleep` jobs of 0.5 s, one at a time, "
        f"submit -> result, medians): local worker processes {local} s, one-node Ray cluster {on_ray} s, "
        f"overhead {overhead['ray_overhead_s']} s.\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
