"""Transport benchmark: a 256 MiB float32 result from server to client on loopback (GB/s),
and the median ping round trip (µs). Targets: >= 1 GB/s and < 200 µs.

Runs a real ``splatstage serve`` in a subprocess; the result array is produced once by a
``sleep`` job and then fetched repeatedly from the job store (memory-mapped, zero-copy).

    python benchmarks/transport.py [--mib 256] [--repeats 7] [--pings 2000] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.evaluation.machine import describe  # noqa: E402

from backend.server.launch import ServerProcess  # noqa: E402


def machine_name() -> str:
    return describe()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=float, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--label", default="cpu-2core", help="machine label used in the result file name")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        srv = ServerProcess(Path(tmp)).start()
        try:
            c = srv.client(timeout=120)
            job = c.submit("sleep", {"seconds": 0, "steps": 1, "result_mib": args.mib})
            first = c.wait(job, timeout=600)
            nbytes = first.arrays["payload"].nbytes
            del first
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                msg = c.fetch(job, timeout=600)
                assert msg.arrays["payload"].nbytes == nbytes
                times.append(time.perf_counter() - t0)
                del msg
            rtts = []
            for _ in range(args.pings):
                rtts.append(c.ping())
            c.close()
        finally:
            srv.stop()
    med = statistics.median(times)
    result = {
        "benchmark": "transport",
        "machine": machine_name(),
        "payload_bytes": nbytes,
        "fetch_seconds_median": med,
        "throughput_gb_s_median": nbytes / med / 1e9,
        "throughput_gb_s_all": [nbytes / t / 1e9 for t in times],
        "ping_rtt_us_median": statistics.median(rtts) * 1e6,
        "ping_rtt_us_p99": sorted(rtts)[int(0.99 * len(rtts))] * 1e6,
        "targets": {"throughput_gb_s": ">= 1", "ping_rtt_us": "< 200"},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"transport-{args.label}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['machine']}\n{nbytes / 2**20:.0f} MiB result: {result['throughput_gb_s_median']:.2f} GB/s (median of "
          f"{args.repeats}); ping round trip median {result['ping_rtt_us_median']:.0f} µs, p99 "
          f"{result['ping_rtt_us_p99']:.0f} µs\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
