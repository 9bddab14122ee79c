"""Headless Splatstage: footage -> camera solve -> cameras -> product -> saved .blend
[-> composited video].

    blender -b [scene.blend] --python blender_addon/batch.py -- --video V --product P --out DIR
        [--size M] [--render OUT.mp4 [--preview] [--at-pixel U,V] [--at-frame N]]
    python blender_addon/batch.py --video V --product P --out DIR        (bpy as a module)

Uses the installed Splatstage extension when it is enabled, else the add-on of this source
checkout. Without a .blend the run starts from an empty scene. Every step is one of the
add-on's operators, run synchronously. Without ``--backend`` the batch uses the backend at the
preferences' address (else tcp://127.0.0.1:5555) when one answers there, and otherwise starts
a local ``splatstage serve`` for this run (as the add-on's *Start Local Backend* does) and
stops it at the end. ``--render`` then runs the backend's ``composite`` job on the solved
footage (reusing the solve) and writes the video; the rendered product has the size of the one
in the saved .blend. Exits 0 and prints the saved .blend path (then the video's path with
``--render``) on success; exits 1 with a one-line error on stderr on failure.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # run as a script: the add-on's folder must not shadow top-level modules

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options, one group per step; each is checked (``check_*``) before anything runs."""
    ap = argparse.ArgumentParser(prog="batch.py", description="Headless Splatstage pipeline")
    io = ap.add_argument_group("footage and output")
    io.add_argument("--video", required=True, type=Path, help="footage to matchmove")
    io.add_argument("--out", required=True, type=Path, help="output folder (scene.blend, solve/)")
    io.add_argument("--start", type=int, default=0, help="first video frame")
    io.add_argument("--end", type=int, default=-1, help="last video frame (-1: to the end)")
    io.add_argument("--stride", type=int, default=1)

    be = ap.add_argument_group("backend")
    be.add_argument("--backend", default="",
                    help="backend address; default: the preferences' address or tcp://127.0.0.1:5555 when a "
                         "backend answers there, else a local backend started for this run and stopped after it")
    be.add_argument("--backend-python", type=Path, metavar="PYTHON",
                    help="interpreter for that local backend (default: the preferences' Backend Python, this "
                         "Python when splatstage is installed beside it, else the source checkout's .venv)")
    be.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for each backend job")
    be.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for each backend answer")

    pr = ap.add_argument_group("product")
    pr.add_argument("--product", type=Path, help="GLB product to insert (optional)")
    pr.add_argument("--size", type=float, metavar="M",
                    help="product's real size in metres along --axis, in the .blend and in the render "
                         "(default: the model's own size; glTF units are metres)")
    pr.add_argument("--axis", default="LARGEST", choices=("LARGEST", "HEIGHT", "WIDTH", "DEPTH"),
                    help="the product axis --size measures")
    pr.add_argument("--rotation", type=float, default=0.0, help="product rotation about the ground normal, degrees")
    pr.add_argument("--place", choices=("view", "cursor"), default="view",
                    help="product at the ground point seen at the first frame's image centre, or at the 3D cursor")

    rd = ap.add_argument_group("render")
    rd.add_argument("--render", type=Path, metavar="OUT.mp4",
                    help="afterwards composite the product into the footage on the backend and write this video")
    rd.add_argument("--preview", action="store_true",
                    help="--render with reduced settings (240 px, 8 samples, 60 training steps)")
    rd.add_argument("--at-pixel", metavar="U,V",
                    help="--render: the product stands where the ground meets this footage pixel "
                         "(default: centre of the lower third)")
    rd.add_argument("--at-frame", type=int, default=0, metavar="N", help="--render: video frame of --at-pixel")
    rd.add_argument("--steps", type=int, help="--render: reconstruction training steps (default: the job's)")
    rd.add_argument("--max-frames", type=int, help="--render: composite only the first N frames")
    sc = ap.add_argument_group("scale (default: a guess, the first camera 1.6 m above the ground)")
    sc.add_argument("--camera-height", type=float, metavar="M", help="the first camera's height above the ground")
    sc.add_argument("--scale-distance", type=float, metavar="M", help="known distance between --scale-pixels")
    sc.add_argument("--scale-pixels", metavar="F,X0,Y0,X1,Y1", help="two ground pixels of video frame F")
    sc.add_argument("--scale-height", type=float, metavar="M", help="known height of something on the ground")
    sc.add_argument("--scale-foot-top", metavar="F,XF,YF,XT,YT", help="its foot and top pixels in video frame F")
    return ap.parse_args(argv)


def scale_reference(args: argparse.Namespace) -> dict:
    """The scale options as job parameters (empty: none); raises ValueError naming a bad one."""
    ref = {k: getattr(args, k, None) for k in ("camera_height", "scale_distance", "scale_pixels", "scale_height",
                                               "scale_foot_top")}
    ref = {k: v for k, v in ref.items() if v is not None}
    for k in ("camera_height", "scale_distance", "scale_height"):
        if k in ref and not (math.isfinite(ref[k]) and ref[k] > 0):
            raise ValueError(f"--{k.replace('_', '-')} must be positive (metres), got {ref[k]}")
    kinds = [set(ref) == {"camera_height"}, set(ref) == {"scale_distance", "scale_pixels"},
             set(ref) == {"scale_height", "scale_foot_top"}]
    if ref and not any(kinds):
        raise ValueError("give one scale reference: --camera-height, --scale-distance with --scale-pixels, or "
                         "--scale-height with --scale-foot-top")
    return ref


def script_args() -> list[str]:
    """Arguments after ``--`` (Blender) or after the script name (Python with bpy)."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1:]
    return sys.argv[1:]


def start_empty_if_no_file() -> bool:
    """Without a .blend (``bpy.data.filepath`` empty) replace the startup scene (Blender's
    default Cube, Light and Camera) by an empty one; returns whether it did."""
    import bpy

    if bpy.data.filepath:
        return False
    bpy.ops.wm.read_homefile(use_empty=True)
    return True


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


def check_product_args(args: argparse.Namespace) -> None:
    """Raises ValueError with one line naming the bad product option."""
    if args.size is not None and not (math.isfinite(args.size) and args.size > 0):
        raise ValueError(f"--size must be positive (metres), got {args.size}")
    if args.product is None and args.size is not None:
        raise ValueError("--size needs --product")


def check_render_args(args: argparse.Namespace, job_params) -> dict:
    """The Render panel settings ``--render`` asks for (checked before anything runs);
    raises ValueError with one line naming the bad option. ``job_params``: the add-on's
    ``core.job_params`` module. The product height is set after the product is inserted."""
    if args.render is None:
        for name in ("preview", "at_pixel", "steps", "max_frames"):
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
    return {"render_output": str(out), "render_placement": "PIXEL" if pixel else "DEFAULT",
            "render_pixel": pixel or (0.0, 0.0), "render_frame": args.at_frame, "render_preview": bool(args.preview),
            "render_steps": args.steps or 0, "render_max_frames": args.max_frames or 0, "render_reuse": True}


def _backend_python(args: argparse.Namespace, prefs, local_backend) -> str:
    """The interpreter for a local backend (empty when none is found)."""
    if args.backend_python is not None:
        return str(args.backend_python.expanduser().resolve())
    if prefs is not None and prefs.backend_python:
        import bpy

        return os.path.abspath(bpy.path.abspath(prefs.backend_python))
    if local_backend.default_python():
        return local_backend.default_python()
    venv = Path(__file__).resolve().parents[1] / ".venv"  # the checkout this script belongs to
    return next((str(p) for p in (venv / "bin" / "python", venv / "Scripts" / "python.exe") if p.is_file()), "")


@contextlib.contextmanager
def backend(args: argparse.Namespace, addon, roots: list[Path]):
    """Yields the address to run the jobs on: ``--backend``; else the preferences' (or the
    default) address when a backend answers there; else a local backend started now (free
    loopback port, inputs confined to ``roots``), stopped with its workers on exit."""
    import importlib

    if args.backend:
        yield args.backend
        return
    local_backend = importlib.import_module(f"{addon.__name__}.core.local_backend")
    client_cls = importlib.import_module(f"{addon.__name__}.vendor").module("client").Client
    prefs = importlib.import_module(f"{addon.__name__}.preferences").get()
    address = prefs.address if prefs is not None and prefs.address else DEFAULT_ADDRESS
    keys = importlib.import_module(f"{addon.__name__}.core.backend_link").load_curve_keys(
        prefs.server_key_file if prefs else "", prefs.client_key_file if prefs else "")
    if local_backend.answers(client_cls, address, timeout=min(args.connect_timeout, 3.0),
                             server_public_key=keys[0], client_keys=keys[1]):
        print(f"batch: using the backend at {address}", flush=True)
        yield address
        return
    python = _backend_python(args, prefs, local_backend)
    if not python:
        raise RuntimeError(f"no backend answers at {address} and no Python to start one: pass --backend ADDR, "
                           "or --backend-python PATH (a Python with splatstage installed)")
    own_cache = not (prefs is not None and prefs.backend_cache)
    cache = Path(tempfile.mkdtemp(prefix="splatstage-batch-")) if own_cache else Path(prefs.backend_cache)
    local = local_backend.free_address()
    print(f"batch: no backend answers at {address}; starting a local backend on {local} ({python})", flush=True)
    proc = None
    try:
        proc = local_backend.start(python, local, str(cache), [str(r) for r in roots], str(cache / "server.log"))
        local_backend.wait_until_ready(proc, client_cls, local, timeout=max(60.0, args.connect_timeout),
                                       log_path=str(cache / "server.log"))
        print(f"batch: local backend ready (pid {proc.pid})", flush=True)
        yield local
    finally:
        if proc is not None:
            local_backend.stop(proc)
            print(f"batch: local backend stopped (pid {proc.pid})", flush=True)
        if own_cache:
            shutil.rmtree(cache, ignore_errors=True)


def _roots(args: argparse.Namespace, out: Path) -> list[Path]:
    """Folders a local backend may read: the footage's, the product's, the output's."""
    roots = [args.video.resolve().parent, out]
    if args.product is not None:
        roots.append(args.product.resolve().parent)
    if args.render is not None:
        roots.append(args.render.resolve().parent)
    return list(dict.fromkeys(roots))


def run(args: argparse.Namespace, addon) -> list[Path]:
    import importlib

    import bpy

    scene = bpy.context.scene
    out = args.out.resolve()
    if not args.video.is_file():
        raise RuntimeError(f"{args.video}: video not found")
    if args.product is not None and not args.product.is_file():
        raise RuntimeError(f"{args.product}: product file not found")
    check_product_args(args)
    scale_ref = scale_reference(args)
    render = check_render_args(args, importlib.import_module(f"{addon.__name__}.core.job_params"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    bpy.ops.splatstage.load_footage(filepath=str(args.video.resolve()), frame_start=args.start,
                                    frame_end=args.end, stride=args.stride)
    scene.splatstage.solve_dir = str(out / "solve")
    with backend(args, addon, _roots(args, out)) as address:
        print(f"batch: solving cameras for {args.video} ...", flush=True)
        bpy.ops.splatstage.solve_cameras(address=address, timeout=args.timeout, connect_timeout=args.connect_timeout)
        print(f"batch: cameras imported ({time.monotonic() - t0:.1f} s); {scene.splatstage.solve_summary}", flush=True)
        set_scale(addon, scene, out / "solve" / "cameras.json", scale_ref)
        if args.product is not None:
            insert_product(args, scene)
        for key, value in render.items():
            setattr(scene.splatstage, key, value)
        blend = out / "scene.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        if not render:
            return [blend]
        print(f"batch: rendering the composite to {render['render_output']} ...", flush=True)
        t1 = time.monotonic()
        bpy.ops.splatstage.render_composite(address=address, timeout=args.timeout,
                                            connect_timeout=args.connect_timeout)
        print(f"batch: composite written ({time.monotonic() - t1:.1f} s)", flush=True)
        return [blend, Path(scene.splatstage.render_result)]


def set_scale(addon, scene, cameras: Path, ref: dict) -> None:
    """Scale the imported solve by the scale options (the composite applies them to the solve
    folder too); prints the scale line (a warning while it is the default guess)."""
    import importlib
    import json

    core = importlib.import_module(f"{addon.__name__}.core.set_scale")
    if ref:
        bpy_side = importlib.import_module(f"{addon.__name__}.set_scale_bpy")
        doc = json.loads(Path(cameras).read_text())
        try:
            bpy_side.apply_reference(scene, doc, ref)
        except core.ScaleError as exc:
            raise RuntimeError(f"cannot set the scale: {exc}") from None
    print(f"batch: {core.describe(scene.splatstage.scale_record)[0]}", flush=True)


def insert_product(args: argparse.Namespace, scene):
    """Insert the product; the scene's Product settings then say the size it got, and (set by
    the operator) so does the Render panel's product height: a render (``--render`` now, or
    *Render Composite* later) shows it at that size."""
    import bpy

    if args.place == "view":
        point = view_ground_point(scene)
        if point is not None:
            scene.cursor.location = point
    before = {o.session_uid for o in scene.objects}
    bpy.ops.splatstage.insert_product(filepath=str(args.product.resolve()), dimension=args.size or 0.0,
                                      own_size=args.size is None, axis=args.axis,
                                      rotation_z=math.radians(args.rotation))
    root = next(o for o in scene.objects if o.session_uid not in before and "splatstage_product" in o)
    s = scene.splatstage
    s.product_path = str(args.product.resolve())
    s.product_axis = args.axis
    s.product_size = float(root["splatstage_dimension_m"])
    s.product_rotation = math.radians(args.rotation)
    print(f"batch: inserted {args.product.name} ({root['splatstage_height_m']:.4f} m tall"
          f"{', its own size' if args.size is None else ''})", flush=True)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parse_args(script_args() if argv is None else argv)
    start_empty_if_no_file()
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
