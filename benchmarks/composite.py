""""Does it stick?": product anchor drift under solved vs true cameras, and composite speed.

The clip is a synthetic one with known cameras: by default a 1920x1080 clip of the analytic ray
caster (``backend.evaluation.raycast_scene``, handheld path, ``--frames`` frames, rendered into
``--render-raycast DIR`` or a temporary folder), or ``--clip DIR`` holding ``clip.mp4`` and
``truth.json`` (``backend.synthetic.make_clip`` or the ray caster). The clip is solved with the
project's camera solve. For each placement pixel (U, V) on frame N the anchor is placed twice,
each in its own world: where the solved ground plane meets the solved camera N's ray through
(U, V), and where the true ground (z = 0) meets the true camera N's ray. Both anchors are
projected into every frame through the respective cameras; the difference is the drift (how
far the product slides against the footage), in pixels of the clip itself (no rescaling: the
results record the clip's size). Jitter is the frame-to-frame change of the drift vector.

With ``--render-frames K`` the main job also runs on the first K frames (``--preview`` and
full settings) to time the Blender render per frame.

    python benchmarks/composite.py --machine cpu-2core
    python benchmarks/composite.py --clip /data/clip1080 --machine gpu-h100 --render-frames 24

Writes ``benchmarks/results/composite-<machine>.json``. Targets (at 1920x1080): mean drift
< 0.5 px, max < 1.5 px.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.evaluation.machine import cpu_model  # noqa: E402

from backend.pipelines.composite import placement  # noqa: E402
from shared_protocol import camera_file  # noqa: E402

TARGETS = {"drift_mean_px": 0.5, "drift_max_px": 1.5}


def placements(width: int, height: int, n_frames: int) -> list[tuple[float, float, int]]:
    """Placement pixels on the ground part of the frame: the default (centre of the lower
    third of frame 0) and four more, some on a middle frame."""
    mid = n_frames // 2
    return [(width / 2, height * 5 / 6, 0), (width * 0.25, height * 0.8, 0), (width * 0.75, height * 0.75, 0),
            (width / 2, height * 0.7, mid), (width * 0.3, height * 0.9, n_frames - 1)]


def drift(solved: dict, truth: dict, u: float, v: float, frame: int) -> dict:
    """Drift of one placement over every frame registered in both documents (px of the clip)."""
    a_s = placement.anchor_from_pixel(solved, u, v, frame)
    a_t = placement.anchor_from_pixel(truth, u, v, frame)
    f_s, p_s = placement.anchor_track(solved, a_s)
    f_t, p_t = placement.anchor_track(truth, a_t)
    common, i_s, i_t = np.intersect1d(f_s, f_t, return_indices=True)
    d = p_s[i_s] - p_t[i_t]
    mag = np.linalg.norm(d, axis=1)
    jit = np.linalg.norm(np.diff(d, axis=0), axis=1) if len(d) > 1 else np.zeros(1)
    return {"pixel": [u, v], "frame": frame, "frames": int(len(common)),
            "drift_mean_px": float(mag.mean()), "drift_max_px": float(mag.max()),
            "jitter_mean_px": float(jit.mean()), "jitter_max_px": float(jit.max()),
            "anchor_solved": a_s.round(5).tolist(), "anchor_true": a_t.round(5).tolist()}


def render_raycast(out_dir: Path, width: int, height: int, frames: int, workers: int) -> float:
    """Render the ray-cast handheld clip (``clip.mp4``, PNG frames, ``truth.json``); seconds."""
    from backend.evaluation import raycast_scene

    t = time.monotonic()
    raycast_scene.write_clip(out_dir, raycast_scene.handheld_path(frames), 0.875 * width, width, height,
                             supersample=1, video=True, workers=workers)
    return time.monotonic() - t


def solve_clip(video: Path, threads: int | None, out_dir: Path) -> tuple[dict, float]:
    """Solve the clip with the project's camera solve; its outputs go to ``out_dir``."""
    from backend.pipelines.poses.outputs import write_outputs
    from backend.pipelines.poses.pipeline import SolveOptions, solve

    opts = SolveOptions()
    if threads:
        opts.threads = threads
    t = time.monotonic()
    sol = solve(str(video), opts)
    elapsed = time.monotonic() - t
    write_outputs(sol, out_dir)
    return camera_file.read(out_dir / "cameras.json"), elapsed


def time_render(video: Path, solve_dir: Path, frames: int, preview: bool, work: Path, steps: int | None) -> dict:
    """Run the main job on the first ``frames`` frames; the summary's timings."""
    from backend.jobs.composite import request_from_params
    from backend.pipelines.composite import composite

    params = {"video": str(video), "product": str(ROOT / "backend" / "samples" / "product.glb"),
              "preview": preview, "solve": str(solve_dir), "work_dir": str(work), "max_frames": frames,
              "device": "auto", "steps": steps}
    req = request_from_params(params)
    t = time.monotonic()
    summary = composite(req, work / f"out-{'preview' if preview else 'full'}.mp4")
    summary.pop("anchor_track", None)
    summary["wall_seconds"] = time.monotonic() - t
    return summary


def machine_description() -> str:
    cpu = cpu_model()
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, {platform.system()} {platform.release()}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, help="folder with clip.mp4 and truth.json (default: a ray-cast clip)")
    ap.add_argument("--render-raycast", type=Path, metavar="DIR",
                    help="render the ray-cast clip into DIR (kept; reused when it holds truth.json)")
    ap.add_argument("--width", type=int, default=1920, help="ray-cast clip width")
    ap.add_argument("--height", type=int, default=1080, help="ray-cast clip height")
    ap.add_argument("--frames", type=int, default=72, help="ray-cast clip frames")
    ap.add_argument("--machine", required=True, help="name for the results file, e.g. cpu-2core")
    ap.add_argument("--threads", type=int, help="solver threads")
    ap.add_argument("--render-frames", type=int, default=0, help="also time the main job on this many frames")
    ap.add_argument("--render-modes", nargs="+", choices=("preview", "full"), default=["preview", "full"],
                    help="modes timed by --render-frames")
    ap.add_argument("--steps", type=int, help="reconstruction steps for the timed runs (default: the mode's)")
    ap.add_argument("--note", default="", help="free text stored with the results (machine load, ...)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    render_s = None
    if args.clip:
        clip = args.clip
    else:
        clip = args.render_raycast or Path(tmp.name) / "clip"
        if not (clip / "truth.json").exists():
            render_s = render_raycast(clip, args.width, args.height, args.frames, args.threads or os.cpu_count() or 1)
    video, truth_path = clip / "clip.mp4", clip / "truth.json"
    truth = camera_file.read(truth_path)
    solve_dir = Path(tmp.name) / "solve"
    solved, solve_s = solve_clip(video, args.threads, solve_dir)
    cases = [drift(solved, truth, u, v, f) for u, v, f in placements(truth["width"], truth["height"],
                                                                        len(truth["frames"]))]
    result = {
        "benchmark": "composite", "machine": machine_description(), "note": args.note,
        "clip": {"video": str(video.relative_to(ROOT) if video.is_relative_to(ROOT) else video),
                 "width": truth["width"], "height": truth["height"], "frames": len(truth["frames"]),
                 "fps": truth.get("fps"),
                 "source": "given" if args.clip else "raycast_scene.handheld_path",
                 "render_seconds": None if render_s is None else round(render_s, 1)},
        "solve_seconds": round(solve_s, 2),
        "targets": TARGETS,
        "drift_mean_px": round(float(np.mean([c["drift_mean_px"] for c in cases])), 4),
        "drift_max_px": round(float(np.max([c["drift_max_px"] for c in cases])), 4),
        "jitter_mean_px": round(float(np.mean([c["jitter_mean_px"] for c in cases])), 4),
        "jitter_max_px": round(float(np.max([c["jitter_max_px"] for c in cases])), 4),
        "cases": cases,
    }
    if args.render_frames:
        result["render"] = {mode: time_render(video, solve_dir, args.render_frames, mode == "preview",
                                              Path(tmp.name) / mode, args.steps) for mode in args.render_modes}
    tmp.cleanup()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"composite-{args.machine}.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("cases", "render")}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
