"""Camera solve on a busy machine: one clip solved alone and beside a CPU-bound process.

An artist's machine is rarely idle (Blender renders while the backend works). The competing
process here is a 2-thread PyTorch training loop (a small conv net on random data,
``torch.set_num_threads(2)``), the load a CPU reconstruction puts on a machine. Each repeat
solves the clip once alone and once beside the competitor, every solve in a fresh process; the
two kinds of run alternate, so other load on the machine falls on both. The report gives the
medians of the total and of each stage, the ratio beside / alone, the solves' CPU time and
involuntary context switches, the competitor's training steps per second, and the load
average around each run.

The clip (90 frames, 960x540, a hand-held walk) is rendered once by the analytic ray caster
(``backend.evaluation.raycast_scene``) into ``~/.cache/splatstage-bench`` unless ``--clip``
names a folder with ``clip.mp4`` and ``truth.json``.

    python benchmarks/poses_busy.py --machine cpu-2core --repeat 3
    python benchmarks/poses_busy.py --machine cpu-2core --code /tmp/older --label before
    python benchmarks/poses_busy.py --machine cpu-2core --busy-session own --label "after, own session"

``--code`` solves with another checkout of the project (its ``backend`` package), so the
numbers of an older version and of this one can sit in one results file under two labels.
Writes ``benchmarks/results/poses_busy-<machine>.json`` and ``.md`` (entries of other labels
already there are kept).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.evaluation.machine import cpu_model  # noqa: E402

DEFAULT_CLIP = Path.home() / ".cache" / "splatstage-bench" / "busy-960x540-90"
TARGET_RATIO = 2.5

# Runs in a fresh interpreter with the chosen checkout first on sys.path.
SOLVE = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from backend.pipelines.poses.pipeline import SolveOptions, solve
from backend.evaluation.pose_metrics import pose_errors
from shared_protocol import camera_file
clip = sys.argv[2]
t = time.perf_counter()
sol = solve(clip + "/clip.mp4", SolveOptions())
seconds = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
truth = camera_file.read(clip + "/truth.json")
true_c2w = camera_file.matrices(truth)
n = min(len(true_c2w), len(sol.matrix_world))
m = pose_errors(sol.matrix_world[:n], true_c2w[:n], sol.focal_px, truth["frames"][0]["focal_px"],
                sol.registered[:n], sol.reproj_error_px[:n])
print(json.dumps({"seconds": seconds, "timings_s": sol.stats["timings_s"],
                  "cpu_s": ru.ru_utime + ru.ru_stime, "involuntary_switches": ru.ru_nivcsw,
                  "fraction_registered": float(m["fraction_registered"]),
                  "rot_err_deg_median": float(m["rot_err_deg_median"]),
                  "reproj_mean_px": float(m["reproj_mean_px"])}))
"""

# The competitor: trains until SIGTERM, then prints its steps and seconds.
BUSY = r"""
import json, signal, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
                          torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
                          torch.nn.Conv2d(32, 3, 3, padding=1))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
x, y = torch.randn(4, 3, 128, 128), torch.randn(4, 3, 128, 128)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
steps, t0 = 0, None
while not stop:
    opt.zero_grad()
    loss = ((net(x) - y) ** 2).mean()
    loss.backward()
    opt.step()
    steps += 1
    if steps == 3:
        t0 = time.perf_counter()
        print("ready", flush=True)
print(json.dumps({"steps": steps - 3, "seconds": time.perf_counter() - t0}), flush=True)
"""


def render_clip(clip: Path, frames: int, width: int, height: int) -> None:
    from backend.evaluation import raycast_scene

    path = raycast_scene.handheld_path(frames, travel=1.2)
    raycast_scene.write_clip(clip, path, 0.875 * width, width, height, supersample=1, video=True)


def _autogroup() -> str | None:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip()
    except OSError:
        return None


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def start_busy(threads: int, own_session: bool = True) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", BUSY, str(threads)], stdout=subprocess.PIPE, text=True,
                            start_new_session=own_session)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError("the competing training process did not start")
    time.sleep(2.0)  # let it settle into its loop
    return proc


def stop_busy(proc: subprocess.Popen) -> dict:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    got = json.loads(out.strip().splitlines()[-1])
    got["steps_per_s"] = round(got["steps"] / got["seconds"], 3) if got["seconds"] > 0 else None
    return got


def solve_once(code: Path, clip: Path, timeout: float) -> dict:
    before = _load()
    proc = subprocess.run([sys.executable, "-c", SOLVE, str(code), str(clip)], capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"solve failed: {proc.stderr.strip().splitlines()[-1:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["load_before"], res["load_after"] = before, _load()
    return res


def busy_alone(threads: int, seconds: float, own_session: bool = True) -> dict:
    """The competitor's own speed with the machine to itself (apart from other load)."""
    proc = start_busy(threads, own_session)
    time.sleep(seconds)
    return stop_busy(proc)


def _median(runs: list[dict], key) -> float:
    return float(np.median([key(r) for r in runs]))


def summarise(alone: list[dict], beside: list[dict]) -> dict:
    stages = sorted({k for r in alone + beside for k in r["timings_s"]})
    out = {"alone_s": round(_median(alone, lambda r: r["seconds"]), 3),
           "beside_s": round(_median(beside, lambda r: r["seconds"]), 3)}
    out["ratio"] = round(out["beside_s"] / out["alone_s"], 3)
    for name, runs in (("alone", alone), ("beside", beside)):
        out[f"{name}_stages_s"] = {s: round(_median(runs, lambda r: r["timings_s"].get(s, 0.0)), 3)
                                   for s in stages}
        out[f"{name}_cpu_s"] = round(_median(runs, lambda r: r["cpu_s"]), 3)
        out[f"{name}_involuntary_switches"] = int(_median(runs, lambda r: r["involuntary_switches"]))
    out["track_ratio"] = round(out["beside_stages_s"]["track"] / out["alone_stages_s"]["track"], 3)
    return out


def markdown(res: dict) -> str:
    lines = [f"# Camera solve on a busy machine: {res['machine']}", "",
             f"Machine: {res['host']['cpu']}, {res['host']['cores']} cores. Clip: {res['clip']['name']} "
             f"({res['clip']['width']}x{res['clip']['height']}, {res['clip']['frames']} frames, ray-cast "
             "hand-held walk, H.264). Competitor: a 2-thread PyTorch training loop (small conv net on "
             "random data), in its own session (another application) or in the benchmark's (shared). "
             "Each repeat solves alone, then beside the competitor, each solve in a "
             "fresh process; medians over the repeats. Load averages (1, 5, 15 min) are those "
             "around each run: other work on the machine raises them. Kernel autogroup scheduling "
             f"(CPU shared per session first): {res['host'].get('sched_autogroup')}.", ""]
    for label, e in res["entries"].items():
        s = e["summary"]
        lines += [f"## {label}", "", e.get("note") or "", "",
                  "| | alone | beside | beside / alone |", "|---|---|---|---|",
                  f"| solve total (s) | {s['alone_s']} | {s['beside_s']} | **{s['ratio']}** |",
                  f"| track stage (s) | {s['alone_stages_s']['track']} | {s['beside_stages_s']['track']} "
                  f"| **{s['track_ratio']}** |"]
        for st in s["alone_stages_s"]:
            if st != "track":
                lines.append(f"| {st} (s) | {s['alone_stages_s'][st]} | {s['beside_stages_s'][st]} | |")
        lines += [f"| solve CPU time (s) | {s['alone_cpu_s']} | {s['beside_cpu_s']} | |",
                  f"| involuntary context switches | {s['alone_involuntary_switches']} | "
                  f"{s['beside_involuntary_switches']} | |", ""]
        lines.append(f"Target: beside / alone <= {TARGET_RATIO}. Runs (s): alone "
                     f"{[round(r['seconds'], 2) for r in e['alone']]}, beside "
                     f"{[round(r['seconds'], 2) for r in e['beside']]}.")
        lines.append(f"Load average around the runs: alone {[r['load_before'] for r in e['alone']]}, "
                     f"beside {[r['load_before'] for r in e['beside']]}.")
        comp = e["competitor"]
        lines.append(f"Competitor ({comp.get('session', 'shared')} session) steps/s: alone "
                     f"{comp['alone']['steps_per_s']}, beside the solves {[c['steps_per_s'] for c in comp['beside']]}.")
        acc = e["alone"][0]
        lines += [f"Accuracy (first alone run): registered {acc['fraction_registered']}, median rotation "
                  f"error {round(acc['rot_err_deg_median'], 4)} deg, mean reprojection error "
                  f"{round(acc['reproj_mean_px'], 3)} px.", ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP,
                    help="folder with clip.mp4 and truth.json (rendered there if absent)")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--width", type=int, default=960)
    ap.add_argument("--height", type=int, default=540)
    ap.add_argument("--repeat", type=int, default=3, help="solves alone and beside (default 3 each)")
    ap.add_argument("--busy-threads", type=int, default=2, help="the competitor's torch threads (default 2)")
    ap.add_argument("--busy-session", choices=("own", "shared"), default="shared",
                    help="run the competitor in the benchmark's session (default; as a local backend started "
                         "by Blender shares Blender's session) or in its own: with the kernel's autogroup "
                         "scheduling, CPU time is shared out per session first")
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose solve runs (default: this one)")
    ap.add_argument("--label", default="after", help="name of this entry in the results (default 'after')")
    ap.add_argument("--machine", default=platform.node() or "unknown", help="name for the results files")
    ap.add_argument("--note", default="", help="free text for the report")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds one solve may take")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json and stop")
    args = ap.parse_args(argv)
    path = args.out / f"poses_busy-{args.machine}.json"
    if args.report_only:
        (args.out / f"poses_busy-{args.machine}.md").write_text(markdown(json.loads(path.read_text())))
        return 0

    if not (args.clip / "truth.json").exists():
        render_clip(args.clip, args.frames, args.width, args.height)
    truth = json.loads((args.clip / "truth.json").read_text())
    own = args.busy_session == "own"
    comp_alone = busy_alone(args.busy_threads, 10.0, own)
    print("competitor alone", comp_alone, flush=True)
    alone, beside, comp_beside = [], [], []
    for i in range(args.repeat):
        alone.append(solve_once(args.code, args.clip, args.timeout))
        print("alone", json.dumps(alone[-1]), flush=True)
        busy = start_busy(args.busy_threads, own)
        try:
            beside.append(solve_once(args.code, args.clip, args.timeout))
        finally:
            comp_beside.append(stop_busy(busy))
        print("beside", json.dumps(beside[-1]), flush=True)
    entry = {"code": str(args.code.resolve()), "note": args.note, "alone": alone, "beside": beside,
             "competitor": {"threads": args.busy_threads, "session": args.busy_session, "alone": comp_alone,
                            "beside": comp_beside},
             "summary": summarise(alone, beside), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.mkdir(parents=True, exist_ok=True)
    res = json.loads(path.read_text()) if path.exists() else {"entries": {}}
    res.update({"machine": args.machine, "host": {"cpu": cpu_model(), "cores": os.cpu_count(),
                                                   "sched_autogroup": _autogroup()},
                "clip": {"name": args.clip.name, "width": truth["width"], "height": truth["height"],
                         "frames": len(truth["frames"])}, "target_ratio": TARGET_RATIO})
    res["entries"][args.label] = entry
    path.write_text(json.dumps(res, indent=1) + "\n")
    (args.out / f"poses_busy-{args.machine}.md").write_text(markdown(res))
    print(json.dumps(entry["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
