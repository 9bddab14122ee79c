"""Prepare the inputs of the side-by-side reconstruction benchmark (``reconstruct.py --side-by-side``).

Each input becomes a folder ``NAME/`` holding ``solve/`` (the project's own camera solve:
cameras.json + points.ply) and ``images/`` (the solved frames as JPEG, named as cameras.json's
frame sources), so a GPU machine without a video decoder can train on it:

    python benchmarks/reconstruct_inputs.py --out carry/recon \
        --cycles 960 540 90 --video ../shared/data/real-video/lumia_box_on_desk_handheld.mp4 \
        --video-stride 4 --herz

- ``--cycles W H N``: a Cycles-rendered hand-held walk (``backend.synthetic``, known cameras),
  solved by the project from its video;
- ``--video CLIP``: a real hand-held clip, every ``--video-stride``-th frame, solved by the project;
- ``--herz``: herz-jesus-p8 (8 real photos), solved by the project as an image set.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HERZ = ROOT.parent / "shared" / "data" / "herz-jesus-p8" / "images"


def solve(footage: Path, out: Path, extra: list[str]) -> dict:
    """Run ``splatstage poses`` (the project's solve, its defaults) into ``out``."""
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "backend.cli", "poses", str(footage), "-o", str(out), *extra]
    subprocess.run(cmd, check=True, cwd=ROOT)
    doc = json.loads((out / "cameras.json").read_text())
    reg = sum(1 for f in doc["frames"] if f.get("registered", True))
    return {"solve_seconds": round(time.perf_counter() - t, 1), "frames": len(doc["frames"]),
            "registered": reg}


def export_images(solve_dir: Path, footage: Path, images: Path, quality: int = 95) -> None:
    """Write the solve's registered frames as JPEG and point cameras.json at them."""
    import cv2

    from backend.media.video import iter_frames

    cam_path = solve_dir / "cameras.json"
    doc = json.loads(cam_path.read_text())
    images.mkdir(parents=True, exist_ok=True)
    if footage.is_file():
        want = {int(f["source"]): f for f in doc["frames"]}
        for idx, _, frame in iter_frames(footage):
            if idx in want:
                name = f"{idx:06d}.jpg"
                cv2.imwrite(str(images / name), frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
                want[idx]["source"] = name
            if idx >= max(want):
                break
    else:
        for f in doc["frames"]:
            shutil.copy2(footage / f["source"], images / f["source"])
    for key in ("source_video", "source", "input"):
        doc.pop(key, None)
        (doc.get("stats") or {}).pop(key, None)
    doc["source"] = "../images"
    cam_path.write_text(json.dumps(doc))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cycles", type=int, nargs=3, metavar=("W", "H", "N"))
    ap.add_argument("--cycles-samples", type=int, default=32)
    ap.add_argument("--video", type=Path)
    ap.add_argument("--video-stride", type=int, default=1)
    ap.add_argument("--herz", action="store_true")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    info = {}
    if args.cycles:
        from backend.synthetic import make_clip

        w, h, n = args.cycles
        clip = args.out / "cycles-clip"
        if not (clip / "truth.json").is_file():
            t = time.perf_counter()
            make_clip(clip, path="handheld", width=w, height=h, frames=n, samples=args.cycles_samples,
                      denoise=True, threads=0)
            info["cycles_render_seconds"] = round(time.perf_counter() - t, 1)
        d = args.out / "cycles"
        info["cycles"] = solve(clip / "clip.mp4", d / "solve", [])
        export_images(d / "solve", clip / "clip.mp4", d / "images")
    if args.video:
        d = args.out / "real"
        info["real"] = solve(args.video, d / "solve", ["--stride", str(args.video_stride)]
                             if args.video_stride > 1 else [])
        info["real"]["video"] = args.video.name
        export_images(d / "solve", args.video, d / "images")
    if args.herz:
        d = args.out / "herz"
        info["herz"] = solve(HERZ, d / "solve", [])
        export_images(d / "solve", HERZ, d / "images")
    (args.out / "inputs.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
