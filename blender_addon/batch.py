"""Headless Splatstage: footage -> camera solve -> cameras -> product -> saved .blend
[-> composited video].

    blender -b [scene.blend] --python blender_addon/batch.py -- --video V --product P --out DIR
        [--render OUT.mp4 [--preview] [--at-pixel U,V] [--at-frame N] [--product-height M]]
    python blender_addon/batch.py --video V --product P --out DIR        (bpy as a module)

Uses the installed Splatstage extension when it is enabled, else the add-on of this source
checkout. Every step is one of the add-on's operators, run synchronously. ``--render`` then runs
the backend's ``composite`` job on the solved footage (reusing the solve) and writes the video.
Exits 0 and prints the saved .blend path (then the video's path with ``--render``) on success;
exits 1 with a one-line error on stderr on failure.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

if __name__ == "__main__" and sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # run as a script: the add-on's folder must not shadow top-level modules


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="batch.py", description="Headless Splatstage pipeline")
    ap.add_argument("--video", required=True, type=Path, help="footage to matchmove")
    ap.add_argument("--product", type=Path, help="GLB product to insert (optional)")
    ap.add_argument("--out", required=True, type=Path, help="output folder (scene.blend, solve/)")
    ap.add_argument("--backend", default="", help="backend address (default: preferences or tcp://127.0.0.1:5555)")
    ap.add_argument("--size", type=float, default=0.3, help="product's real size in metres (default 0.3)")
    ap.add_argument("--axis", default="LARGEST", choices=("LARGEST", "HEIGHT", "WIDTH", "DEPTH"))
    ap.add_argument("--rotation", type=float, default=0.0, help="product rotation about the ground normal, degrees")
    ap.add_argument("--place", choices=("view", "cursor"), default="view",
                    help="product at the ground point seen at the first frame's image centre, or at the 3D cursor")
    ap.add_argument("--start", type=int, default=0, help="first video frame")
    ap.add_argument("--end", type=int, default=-1, help="last video frame (-1: to the end)")
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--render", type=Path, metavar="OUT.mp4",
                    help="afterwards composite the product into the footage on the backend and write this video")
    ap.add_argument("--preview", action="store_true",
                    help="--render with reduced settings (240 px, 8 samples, 60 training steps)")
    ap.add_argument("--at-pixel", metavar="U,V",
                    help="--render: the product stands where the ground meets this footage pixel "
                         "(default: centre of the lower third)")
    ap.add_argument("--at-frame", type=int, default=0, metavar="N", help="--render: video frame of --at-pixel")
    ap.add_argument("--product-height", type=float, metavar="M",
                    help="--render: product height in metres (default: the model's own size)")
    ap.add_argument("--steps", type=int, help="--render: reconstruction training steps (default: the job's)")
    ap.add_argument("--max-frames", type=int, help="--render: composite only the first N frames")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for each backend job")
    ap.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for each backend answer")
    return ap.parse_args(argv)


def script_args() -> list[str]:
    """Arguments after ``--`` (Blender) or after the script name (Python with bpy)."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1:]
    return sys.argv[1:]


def load_addon():
    """(module, registered_here): the enabled Splatstage extension, else this checkout's add-on,
    registered by this call (the caller unregisters it before exit)."""
    import bpy

    for addon in bpy.context.preferences.addons:
        if addon.module.endswith(".splatstage"):
            return sys.modules[addon.module], False
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    import blender_addon

    if hasattr(bpy.types, "SPLATSTAGE_OT_import_cameras"):
        return blender_addon, False
    blender_addon.register()
    return blender_addon, True


def view_ground_point(scene):
    """Where the first frame's optical axis meets the Splatstage ground plane (None if it does not)."""
    import numpy as np

    cam, ground = scene.camera, next((o for o in scene.objects if o.get("splatstage_ground")), None)
    if cam is None or ground is None:
        return None
    scene.frame_set(scene.frame_start)
    mw = np.array(cam.matrix_world)
    origin, direction = mw[:3, 3], -mw[:3, 2]
    gw = np.array(ground.matrix_world)
    p0, n = gw[:3, 3], gw[:3, 2] / np.linalg.norm(gw[:3, 2])
    denom = float(direction @ n)
    if abs(denom) < 1e-9:
        return None
    t = float((p0 - origin) @ n) / denom
    return tuple(origin + t * direction) if t > 0 else None


def check_render_args(args: argparse.Namespace, job_params) -> dict:
    """The Render panel settings ``--render`` asks for (checked before anything runs);
    raises ValueError with one line naming the bad option. ``job_params``: the add-on's
    ``core.job_params`` module."""
    if args.render is None:
        for name in ("preview", "at_pixel", "product_height", "steps", "max_frames"):
            if getattr(args, name) not in (None, False):
                raise ValueError(f"--{name.replace('_', '-')} needs --render")
        return {}
    if args.product is None:
        raise ValueError("--render needs --product (the GLB to composite)")
    out = job_params.output_path(args.render, ".mp4", "--render")
    try:
        pixel = job_params.parse_pixel(args.at_pixel) if args.at_pixel is not None else None
    except job_params.ParamError as exc:
        raise ValueError(f"--at-pixel: {exc}") from None
    for name, value, lo in (("--at-frame", args.at_frame, 0), ("--steps", args.steps, 1),
                            ("--max-frames", args.max_frames, 1)):
        if value is not None and value < lo:
            raise ValueError(f"{name} must be >= {lo}, got {value}")
    if args.product_height is not None and not args.product_height > 0:
        raise ValueError(f"--product-height must be positive (metres), got {args.product_height}")
    return {"render_output": str(out), "render_placement": "PIXEL" if pixel else "DEFAULT",
            "render_pixel": pixel or (0.0, 0.0), "render_frame": args.at_frame,
            "render_product_height": args.product_height or 0.0, "render_preview": bool(args.preview),
            "render_steps": args.steps or 0, "render_max_frames": args.max_frames or 0, "render_reuse": True}


def run(args: argparse.Namespace, addon) -> list[Path]:
    import importlib

    import bpy

    scene = bpy.context.scene
    out = args.out.resolve()
    if not args.video.is_file():
        raise RuntimeError(f"{args.video}: video not found")
    if args.product is not None and not args.product.is_file():
        raise RuntimeError(f"{args.product}: product file not found")
    render = check_render_args(args, importlib.import_module(f"{addon.__name__}.core.job_params"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    bpy.ops.splatstage.load_footage(filepath=str(args.video.resolve()), frame_start=args.start,
                                    frame_end=args.end, stride=args.stride)
    scene.splatstage.solve_dir = str(out / "solve")
    print(f"batch: solving cameras for {args.video} ...", flush=True)
    bpy.ops.splatstage.solve_cameras(address=args.backend, timeout=args.timeout,
                                     connect_timeout=args.connect_timeout)
    print(f"batch: cameras imported ({time.monotonic() - t0:.1f} s); {scene.splatstage.solve_summary}", flush=True)
    if args.product is not None:
        if args.place == "view":
            point = view_ground_point(scene)
            if point is not None:
                scene.cursor.location = point
        bpy.ops.splatstage.insert_product(filepath=str(args.product.resolve()), dimension=args.size,
                                          axis=args.axis, rotation_z=math.radians(args.rotation))
        print(f"batch: inserted {args.product.name}", flush=True)
    if args.product is not None:
        scene.splatstage.product_path = str(args.product.resolve())
        scene.splatstage.product_rotation = math.radians(args.rotation)
    for key, value in render.items():
        setattr(scene.splatstage, key, value)
    blend = out / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    if not render:
        return [blend]
    print(f"batch: rendering the composite to {render['render_output']} ...", flush=True)
    t1 = time.monotonic()
    bpy.ops.splatstage.render_composite(address=args.backend, timeout=args.timeout,
                                        connect_timeout=args.connect_timeout)
    print(f"batch: composite written ({time.monotonic() - t1:.1f} s)", flush=True)
    return [blend, Path(scene.splatstage.render_result)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(script_args() if argv is None else argv)
    addon, registered_here = load_addon()
    try:
        outputs = run(args, addon)
    except Exception as exc:  # noqa: BLE001 - one line to stderr, non-zero exit
        msg = " ".join(str(exc).split()) or type(exc).__name__
        msg = msg[len("Error: "):] if msg.startswith("Error: ") else msg  # an operator's ERROR report
        print(f"batch: error: {msg}", file=sys.stderr, flush=True)
        return 1
    finally:
        if registered_here:
            addon.unregister()  # also avoids bpy 4.2's crash at exit with classes still registered
    for path in outputs:
        print(path, flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    if code:
        sys.exit(code)
