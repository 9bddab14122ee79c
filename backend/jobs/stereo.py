"""Stereo video from a clip: depth-warp stereo (any clip) or scene stereo (from splats).

The output is one H.264 MP4 (``stereo.mp4``; the CLI moves it to ``-o``) in the chosen
layout, or with ``--debug-grid`` the 2x2 inspection grid (left, depth, occlusion mask, warped
right) instead. The source's audio is kept.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from backend.jobs import JobResult
from backend.progress import JobError, Progress

MAIN_OUTPUT = "stereo.mp4"
METHODS = ("auto", "scene", "warp")
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from backend.pipelines.stereo.layouts import LAYOUTS
    from backend.pipelines.stereo.pipeline import FILLS

    p.add_argument("input", type=Path,
                   help="video file or image folder (the left eye), or a camera path (cameras.json or nerfstudio "
                        "camera_path.json) whose both eyes are rendered from --reconstruction")
    p.add_argument("--layout", choices=LAYOUTS, default="sbs", help="output layout (default: sbs)")
    p.add_argument("--anaglyph", choices=("dubois", "simple"), default="dubois",
                   help="anaglyph colour method (default: dubois)")
    p.add_argument("--debug-grid", action="store_true",
                   help="write the 2x2 grid (left, depth, occlusion mask, warped right) instead")
    p.add_argument("--method", choices=METHODS, default="auto",
                   help="scene (render the right eye from a reconstruction), warp (depth-warp) or auto")
    p.add_argument("--reconstruction", type=Path, help="reconstruction folder (splats.ply), for scene stereo")
    p.add_argument("--cameras", type=Path,
                   help="cameras.json of the footage for scene stereo (default: the reconstruction's cameras_refined.json)")
    p.add_argument("--depth", type=Path,
                   help="per-frame depth: folder of .npy/.npz/.tif/.exr or one .npz (see docs/stereo.md)")
    p.add_argument("--interaxial", type=float, default=0.065, help="eye separation in metres (default 0.065)")
    p.add_argument("--convergence", type=float,
                   help="zero-parallax distance in metres (metric depth; default: median depth of frame 0); "
                        "with monocular depth, the fraction of the near..far range on the screen (default 0.5)")
    p.add_argument("--max-disparity", type=float,
                   help="disparity budget in px (default: 3%% of the width for monocular depth, none otherwise)")
    p.add_argument("--focal-px", type=float, help="focal length in px for metric depth (default: cameras.json)")
    p.add_argument("--fill", choices=FILLS, default="background", help="spatial hole fill (default: background)")
    p.add_argument("--temporal-radius", type=int, default=2,
                   help="neighbouring frames each side used to fill holes (default 2; 0 disables)")
    p.add_argument("--edge-px", type=int, default=0,
                   help="leave out this many background pixels at depth edges (colour fringes) and fill them")
    p.add_argument("--chunk", type=int, default=16, help="frames processed per chunk (default 16)")
    p.add_argument("--device", default="auto", help="auto, numpy (CPU), cpu or cuda (torch)")
    p.add_argument("--weights", type=Path, help=f"weights folder (default: {DEFAULT_WEIGHTS})")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality (default 18)")


def params_from_args(args: argparse.Namespace) -> dict:
    def path(p):
        return str(Path(p).resolve()) if p is not None else None

    return {
        "input": path(args.input), "layout": args.layout, "anaglyph": args.anaglyph,
        "debug_grid": bool(args.debug_grid), "method": args.method,
        "reconstruction": path(args.reconstruction), "cameras": path(args.cameras), "depth": path(args.depth),
        "interaxial": args.interaxial, "convergence": args.convergence, "max_disparity": args.max_disparity,
        "focal_px": args.focal_px, "fill": args.fill, "temporal_radius": args.temporal_radius,
        "chunk": args.chunk, "edge_px": args.edge_px, "device": args.device, "weights": path(args.weights),
        "max_frames": args.max_frames, "crf": args.crf,
    }


def _validate(params: dict) -> dict:
    from backend.pipelines.stereo.layouts import LAYOUTS

    p = dict(params)
    if not p.get("input"):
        raise JobError("stereo: 'input' (video or image folder) is required", "bad_params")
    p.setdefault("layout", "sbs")
    if p["layout"] not in LAYOUTS:
        raise JobError(f"stereo: layout must be one of {', '.join(LAYOUTS)}", "bad_params")
    if p.get("anaglyph", "dubois") not in ("dubois", "simple"):
        raise JobError("stereo: anaglyph must be dubois or simple", "bad_params")
    if p.get("method", "auto") not in METHODS:
        raise JobError(f"stereo: method must be one of {', '.join(METHODS)}", "bad_params")
    for key in ("input", "depth", "reconstruction", "cameras"):
        if p.get(key) and not Path(p[key]).exists():
            raise JobError(f"stereo: {key} not found: {p[key]}", "bad_input")
    mf = p.get("max_frames")
    if mf is not None and int(mf) < 1:
        raise JobError("stereo: max_frames must be >= 1", "bad_params")
    if not 0 <= int(p.get("crf", 18)) <= 51:
        raise JobError("stereo: crf must be in [0, 51]", "bad_params")
    return p


def _device(name: str) -> str:
    if name in (None, "", "auto"):
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "numpy"
        except ImportError:
            return "numpy"
    if name not in ("numpy", "cpu") and not str(name).startswith("cuda"):
        raise JobError(f"stereo: device must be auto, numpy, cpu or cuda, got {name!r}", "bad_params")
    return name


def _method(p: dict) -> str:
    method = p.get("method", "auto")
    if method == "auto":
        return "scene" if p.get("reconstruction") and _scene_available() else "warp"
    if method == "scene" and not p.get("reconstruction"):
        raise JobError("stereo: --method scene needs --reconstruction", "bad_params")
    if method == "scene" and not _scene_available():
        raise JobError("stereo: scene stereo needs the splat render service, which this installation lacks",
                       "unavailable")
    return method


def _scene_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("backend.pipelines.stereo.scene") is not None and \
            importlib.util.find_spec("backend.pipelines.render") is not None
    except ImportError:
        return False


def _depth_fn(p: dict, settings, h: int, w: int, sources: dict):
    """``(depth_fn, focal_px, description)`` for the warp method: --depth files, else the
    reconstruction's splat depth, else the monocular model."""
    from backend.pipelines.stereo.depth import FileDepth

    if p.get("depth"):
        src = FileDepth(Path(p["depth"]), "metric", p.get("focal_px"))
        return (lambda i, rgb: (src.kind, src.get(i, h, w))), src.focal_px, f"file:{p['depth']}"
    if p.get("reconstruction"):
        from backend.pipelines.stereo.scene import SplatDepth

        sd = SplatDepth(p["reconstruction"], p.get("cameras"), settings.device)
        focal = p.get("focal_px") or sd.focal_px(w)
        return (lambda i, rgb: ("metric", sd.depth(i, sources.get(i, str(i)), h, w))), focal, "splats"
    from backend.models.depth import load_depth_model

    weights = Path(p.get("weights") or DEFAULT_WEIGHTS)
    # A transformers depth folder in weights/depth/, else the exported network (MonocularDepth).
    mono = load_depth_model(weights, device="cpu" if settings.device == "numpy" else settings.device)

    def relative(rgb):  # inverse depth, larger = nearer, whatever the model predicts
        y = mono(rgb)
        return (1.0 / np.maximum(y, 1e-6)).astype(np.float32) if mono.output == "depth" else y

    return (lambda i, rgb: ("relative", relative(rgb))), None, "monocular"


def run(params: dict, out_dir: Path, progress: Progress) -> JobResult:
    from backend.media.encode import VideoWriter
    from backend.media.video import iter_frames, probe
    from backend.pipelines.stereo.layouts import compose, debug_grid
    from backend.pipelines.stereo.pipeline import WarpSettings, depth_warp_stereo

    p = _validate(params)
    from backend.pipelines.stereo.novel_path import is_camera_path, run_novel_path_stereo

    if is_camera_path(p["input"]):
        if p.get("method", "auto") == "warp":
            raise JobError(f"stereo: {p['input']} is a camera path, not footage: the warp method needs footage",
                           "bad_params")
        return run_novel_path_stereo(p, out_dir, progress)
    method = _method(p)
    if method == "scene":
        from backend.pipelines.stereo.scene import run_scene_stereo

        return run_scene_stereo(p, out_dir, progress)
    info = probe(p["input"])
    total = info.frame_count if not p.get("max_frames") else min(info.frame_count, int(p["max_frames"]))
    settings = WarpSettings(
        interaxial=float(p.get("interaxial", 0.065)), convergence=p.get("convergence"),
        max_disparity=p.get("max_disparity"), temporal_radius=int(p.get("temporal_radius", 2)),
        fill=p.get("fill", "background"), chunk=int(p.get("chunk", 16)), device=_device(p.get("device")),
        edge_px=int(p.get("edge_px", 0)))
    settings.validate()
    progress.stage("depth", "loading depth")
    sources: dict[int, str] = {}
    depth_fn, focal, depth_desc = _depth_fn(p, settings, info.height, info.width, sources)
    inpainter = None
    if settings.fill == "diffusers":
        from backend.models.inpaint import DiffusersInpainter

        inpainter = DiffusersInpainter(Path(p.get("weights") or DEFAULT_WEIGHTS),
                                       device="cpu" if settings.device == "numpy" else settings.device)
    fps = info.fps if info.fps > 0 else 24.0
    audio = None if info.is_image_folder else p["input"]
    progress.stage("stereo", "warping")
    def frames():
        for index, source, rgb in iter_frames(p["input"], max_frames=total):
            sources[index] = source
            yield rgb
            sources.pop(index - 4 * settings.chunk, None)

    holes, temporal, d_lo, d_hi = [], 0, np.inf, -np.inf
    t0 = time.monotonic()
    with VideoWriter(out_dir / MAIN_OUTPUT, fps, audio_from=audio, crf=int(p.get("crf", 18))) as writer:
        for r in depth_warp_stereo(frames(), depth_fn, settings, focal_px=focal, progress=progress, total=total,
                                   inpainter=inpainter):
            if p.get("debug_grid"):
                frame = debug_grid(r.left, r.disparity, r.hole, r.warped)
            else:
                frame = compose(r.left, r.right, p["layout"], p.get("anaglyph", "dubois"))
            writer.write(frame)
            holes.append(float(r.hole.mean()))
            temporal += r.temporal_filled
            d_lo, d_hi = min(d_lo, float(r.disparity.min())), max(d_hi, float(r.disparity.max()))
    elapsed = time.monotonic() - t0
    n = len(holes)
    hole_px = sum(holes) * info.width * info.height
    summary = {
        "method": "warp", "depth": depth_desc, "frames": n, "fps": round(fps, 4),
        "layout": "debug-grid" if p.get("debug_grid") else p["layout"], "audio": bool(writer.audio_codec),
        "device": settings.device, "fill": settings.fill, "temporal_radius": settings.temporal_radius,
        "mean_hole_fraction": round(float(np.mean(holes)), 5) if n else 0.0,
        "temporal_filled_fraction_of_holes": round(temporal / max(1.0, hole_px), 4),
        "disparity_px": [round(d_lo, 3), round(d_hi, 3)], "seconds": round(elapsed, 3),
        "frames_per_second": round(n / elapsed, 3) if elapsed > 0 else None,
    }
    return JobResult(files=[MAIN_OUTPUT], arrays={"hole_fraction": np.asarray(holes, np.float32)}, summary=summary)
