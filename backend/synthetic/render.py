"""Renders a synthetic clip with known cameras and depth (run as a subprocess; imports bpy).

    python -m backend.synthetic.render --out DIR [--path handheld|pan|orbit] [--width 320] ...

Writes into DIR (which must be absent or empty; the result appears atomically):
``frames/%06d.png``, ``depth/%06d.npy`` (float32 planar z-depth in metres along the camera's
viewing axis, ``inf`` where nothing was hit), ``clip.mp4`` (H.264 yuv420p), ``truth.json``
(cameras.json format plus ``scene``, ``depth``, ``generator`` and ``interaxial_m``) and, with
``--stereo``, the same for the right eye under ``right/`` (``right/truth.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from . import staging_dir
from shared_protocol.conventions import BlenderCamera, Intrinsics, blender_to_intrinsics, intrinsics_to_blender

from .paths import PATHS, camera_path

SENSOR_WIDTH_MM = 36.0
DEPTH_CHANNEL = "ViewLayer.Depth.Z"
BACKGROUND_DEPTH = 1e9  # Cycles writes 1e10 where a ray hits nothing


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m backend.synthetic.render", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output folder (absent or empty)")
    p.add_argument("--path", choices=PATHS, default="handheld", help="camera trajectory")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=180)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--fps", type=float, default=24.0)
    f = p.add_mutually_exclusive_group()
    f.add_argument("--focal-mm", type=float, default=None, help="lens on a 36 mm wide sensor (default 30)")
    f.add_argument("--focal-px", type=float, default=None, help="focal length in pixels")
    p.add_argument("--pp-offset", type=float, nargs=2, default=(0.0, 0.0), metavar=("DX", "DY"),
                   help="principal point offset from the image centre in px (+x right, +y down)")
    p.add_argument("--samples", type=int, default=8, help="Cycles samples per pixel")
    p.add_argument("--denoise", action="store_true", help="OpenImageDenoise the renders")
    p.add_argument("--seed", type=int, default=0, help="scene layout, textures, lights and shake")
    p.add_argument("--engine", choices=("CYCLES", "EEVEE"), default="CYCLES")
    p.add_argument("--threads", type=int, default=2, help="render threads (0 = all cores)")
    p.add_argument("--device", choices=("CPU", "CUDA", "OPTIX", "HIP", "ONEAPI"), default="CPU",
                   help="Cycles compute device (GPU kinds use every device of that kind)")
    p.add_argument("--stereo", type=float, default=None, metavar="INTERAXIAL",
                   help="also render a parallel right eye offset by this many metres along camera +x")
    p.add_argument("--occluder", action="store_true",
                   help="add a tall cylinder between the camera and the look-at target")
    p.add_argument("--product", type=Path, default=None, metavar="GLB",
                   help="also stand this glTF product on the ground (Blender's glTF importer), "
                        "e.g. the truth of a composite")
    p.add_argument("--product-at", type=float, nargs=2, default=(0.0, 0.0), metavar=("X", "Y"),
                   help="where the product's footprint centre stands on the ground (m)")
    p.add_argument("--product-height", type=float, default=None,
                   help="scale the product to this height (m); default its own glTF size")
    p.add_argument("--product-rotate", type=float, default=0.0, metavar="DEG",
                   help="turn the product about +Z (deg)")
    p.add_argument("--cam-height", type=float, default=1.6, help="camera height above the ground (m)")
    p.add_argument("--distance", type=float, default=2.6, help="horizontal camera-target distance (m)")
    p.add_argument("--extent", type=float, default=0.8, help="handheld travel (m)")
    p.add_argument("--jitter-mm", type=float, default=1.5, help="handheld position shake RMS (mm)")
    p.add_argument("--jitter-deg", type=float, default=0.2, help="handheld rotation shake RMS (deg)")
    p.add_argument("--pan-deg", type=float, default=30.0, help="total pan yaw (deg)")
    p.add_argument("--orbit-deg", type=float, default=60.0, help="total orbit arc (deg)")
    p.add_argument("--motion-blur", type=float, default=0.0, metavar="SHUTTER",
                   help="camera motion blur, shutter open for this fraction of a frame, centred on "
                        "the frame (its truth pose); 0 = off")
    p.add_argument("--crf", type=int, default=12, help="H.264 quality of clip.mp4")
    p.add_argument("--no-video", action="store_true", help="skip clip.mp4")
    p.add_argument("--save-blend", action="store_true", help="also save scene.blend")
    return p


def validate(args: argparse.Namespace) -> None:
    """Raise ValueError naming the offending option."""
    if args.width < 16 or args.height < 16:
        raise ValueError(f"--width/--height must be >= 16, got {args.width}x{args.height}")
    if not args.no_video and (args.width % 2 or args.height % 2):
        raise ValueError(f"--width/--height must be even for H.264 yuv420p, got {args.width}x{args.height}")
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    if args.fps <= 0:
        raise ValueError(f"--fps must be > 0, got {args.fps}")
    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    if args.focal_px is not None and args.focal_px <= 0 or args.focal_mm is not None and args.focal_mm <= 0:
        raise ValueError("--focal-px/--focal-mm must be > 0")
    if not 0 <= args.motion_blur <= 1:
        raise ValueError(f"--motion-blur shutter must be in [0, 1] frames, got {args.motion_blur}")
    if args.product is not None and not args.product.is_file():
        raise ValueError(f"--product {args.product} is not a file")
    if args.product_height is not None and not args.product_height > 0:
        raise ValueError(f"--product-height must be > 0 m, got {args.product_height}")
    if args.stereo is not None and args.stereo <= 0:
        raise ValueError(f"--stereo interaxial must be > 0 m, got {args.stereo}")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise ValueError(f"--out {args.out} exists and is not an empty folder")


def _setup_render(bpy, args) -> None:
    scene = bpy.context.scene
    r = scene.render
    if args.engine == "CYCLES":
        r.engine = "CYCLES"
        c = scene.cycles
        c.device = _cycles_device(bpy, args.device)
        c.samples = args.samples
        c.use_adaptive_sampling = False
        c.use_denoising = bool(args.denoise)
        c.seed = args.seed
        c.use_animated_seed = False
        c.max_bounces = 4
        c.caustics_reflective = c.caustics_refractive = False
        r.use_persistent_data = True
    else:
        r.engine = "BLENDER_EEVEE"
        scene.eevee.taa_render_samples = args.samples
    r.resolution_x, r.resolution_y, r.resolution_percentage = args.width, args.height, 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.fps, r.fps_base = _fps_fraction(args.fps)
    r.threads_mode = "FIXED" if args.threads > 0 else "AUTO"
    if args.threads > 0:
        r.threads = args.threads
    r.dither_intensity = 0.0
    r.use_motion_blur = args.motion_blur > 0
    if args.motion_blur > 0:
        r.motion_blur_shutter = args.motion_blur
        r.motion_blur_position = "CENTER"
    for attr in dir(r):  # no date/time stamps in the image metadata
        if attr.startswith("use_stamp"):
            setattr(r, attr, False)
    r.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.view_layers[0].use_pass_z = True
    scene.frame_start, scene.frame_end = 0, args.frames - 1


def _cycles_device(bpy, kind: str) -> str:
    """Enable every Cycles device of ``kind``; return the scene device ("CPU" or "GPU")."""
    if kind == "CPU":
        return "CPU"
    prefs = bpy.context.preferences.addons["cycles"].preferences
    try:
        prefs.compute_device_type = kind
    except TypeError as exc:
        raise ValueError(f"--device {kind}: not supported by this Blender build") from exc
    prefs.refresh_devices()
    devices = [d for d in prefs.devices if d.type == kind]
    if not devices:
        raise ValueError(f"--device {kind}: no {kind} device found")
    for d in prefs.devices:
        d.use = d.type == kind
    return "GPU"


def _fps_fraction(fps: float) -> tuple[int, float]:
    n = round(fps)
    return (n, 1.0) if abs(n - fps) < 1e-9 else (int(np.ceil(fps)), np.ceil(fps) / fps)


def _focal_px(args) -> float:
    if args.focal_px is not None:
        return args.focal_px
    return (args.focal_mm if args.focal_mm is not None else 30.0) / SENSOR_WIDTH_MM * args.width


def _add_cameras(bpy, args, mats):
    """Create the animated left camera (and a parallel right child); return (left, right|None)."""
    scene = bpy.context.scene
    w, h = args.width, args.height
    focal_px = _focal_px(args)
    intr = Intrinsics(fx=focal_px, fy=focal_px, cx=0.5 * w + args.pp_offset[0],
                      cy=0.5 * h + args.pp_offset[1], width=w, height=h)
    bc = intrinsics_to_blender(intr, sensor_fit="HORIZONTAL", sensor_size_mm=SENSOR_WIDTH_MM)
    data = bpy.data.cameras.new("camera")
    data.type = "PERSP"
    data.sensor_fit, data.lens = bc.sensor_fit, bc.lens
    data.sensor_width, data.sensor_height = bc.sensor_width, bc.sensor_height
    data.shift_x, data.shift_y = bc.shift_x, bc.shift_y
    data.clip_start, data.clip_end = 0.05, 200.0
    data.dof.use_dof = False
    cam = bpy.data.objects.new("camera", data)
    scene.collection.objects.link(cam)
    cam.rotation_mode = "QUATERNION"
    from mathutils import Matrix
    for i, m in enumerate(mats):
        cam.matrix_world = Matrix(m.tolist())
        cam.keyframe_insert("location", frame=i)
        cam.keyframe_insert("rotation_quaternion", frame=i)
    from bpy_extras import anim_utils
    channels = anim_utils.action_get_channelbag_for_slot(cam.animation_data.action, cam.animation_data.action_slot)
    for fc in channels.fcurves:  # motion blur of the first/last frame sees the motion continue
        fc.extrapolation = "LINEAR"
    scene.camera = cam
    right = None
    if args.stereo is not None:
        right = bpy.data.objects.new("camera_right", data.copy())
        scene.collection.objects.link(right)
        right.parent = cam
        right.matrix_parent_inverse.identity()
        right.location = (args.stereo, 0.0, 0.0)
    return cam, right


def _camera_record(bpy, cam, frame: int) -> dict:
    """cameras.json frame entry of the evaluated camera at the current frame."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    ev = cam.evaluated_get(depsgraph)
    d, r = ev.data, bpy.context.scene.render
    intr = blender_to_intrinsics(BlenderCamera(
        lens=d.lens, sensor_width=d.sensor_width, sensor_height=d.sensor_height, sensor_fit=d.sensor_fit,
        shift_x=d.shift_x, shift_y=d.shift_y, resolution_x=r.resolution_x, resolution_y=r.resolution_y,
        pixel_aspect_x=r.pixel_aspect_x, pixel_aspect_y=r.pixel_aspect_y))
    return {"frame": frame, "source": f"{frame:06d}.png",
            "matrix_world": [[float(v) for v in row] for row in ev.matrix_world],
            "focal_px": intr.fx, "principal_point_px": [intr.cx, intr.cy],
            "registered": True, "reproj_error_px": 0.0}


def _save_frame(bpy, scene, png: Path, depth_npy: Path, exr_tmp: Path) -> None:
    rr = bpy.data.images["Render Result"]
    im = scene.render.image_settings
    im.media_type, im.file_format, im.color_mode, im.color_depth = "IMAGE", "PNG", "RGB", "8"
    im.compression = 15
    rr.save_render(str(png), scene=scene)
    im.media_type = "MULTI_LAYER_IMAGE"
    im.exr_codec, im.color_depth = "NONE", "32"
    rr.save_render(str(exr_tmp), scene=scene)
    from .exr import read_exr_channels
    z = read_exr_channels(exr_tmp, [DEPTH_CHANNEL])[DEPTH_CHANNEL].astype(np.float32)
    exr_tmp.unlink()
    z[z >= BACKGROUND_DEPTH] = np.inf
    np.save(depth_npy, z)


def _truth(args, frames: list[dict], records, extra: dict) -> dict:
    return {"version": 1, "convention": "blender", "width": args.width, "height": args.height,
            "fps": args.fps, "frames": frames,
            "distortion": {"model": "radial2", "k1": 0.0, "k2": 0.0},
            "ground_plane": {"point": [0.0, 0.0, 0.0], "normal": [0.0, 0.0, 1.0]},
            "stats": {}, "scene": records,
            "depth": {"kind": "planar_z", "units": "m", "dtype": "float32", "pattern": "depth/%06d.npy",
                      "background": "inf"},
            **extra}


def _render_frames(bpy, args, stage: Path, eyes) -> tuple[dict, float]:
    """Render every frame for every eye into ``stage``; return (camera records by eye, s/frame)."""
    scene = bpy.context.scene
    for prefix, _ in eyes:
        (stage / prefix / "frames").mkdir(parents=True, exist_ok=True)
        (stage / prefix / "depth").mkdir(parents=True, exist_ok=True)
    cams = {prefix: [] for prefix, _ in eyes}
    t0 = time.perf_counter()
    for i in range(args.frames):
        scene.frame_set(i)
        for prefix, cam in eyes:
            scene.camera = cam
            cams[prefix].append(_camera_record(bpy, cam, i))
            bpy.ops.render.render()
            _save_frame(bpy, scene, stage / prefix / "frames" / f"{i:06d}.png",
                        stage / prefix / "depth" / f"{i:06d}.npy", stage / "tmp_depth.exr")
        print(f"rendered frame {i + 1}/{args.frames}", flush=True)
    scene.camera = eyes[0][1]
    return cams, (time.perf_counter() - t0) / args.frames


def _write_outputs(bpy, args, stage: Path, eyes, cams: dict, records: list, per_frame: float) -> None:
    """Encode the videos and write truth.json for every eye."""
    cam = eyes[0][1]
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"}
    generator = {"path": args.path, "seed": args.seed, "engine": args.engine, "samples": args.samples,
                 "denoise": bool(args.denoise), "blender": bpy.app.version_string,
                 "lens_mm": cam.data.lens, "sensor_width_mm": cam.data.sensor_width,
                 "sensor_fit": cam.data.sensor_fit, "shift": [cam.data.shift_x, cam.data.shift_y],
                 "render_seconds_per_frame": per_frame, "occluder": bool(args.occluder),
                 "options": options}
    for prefix, _ in eyes:
        if not args.no_video:
            from .video import encode_mp4
            encode_mp4(stage / prefix / "frames", stage / prefix / "clip.mp4", args.fps, args.crf)
        extra = {"generator": generator, "interaxial_m": args.stereo, "eye": "right" if prefix else "left",
                 "video": None if args.no_video else "clip.mp4"}
        (stage / prefix / "truth.json").write_text(json.dumps(_truth(args, cams[prefix], records, extra), indent=1))


def render(args: argparse.Namespace) -> Path:
    """Render the clip described by ``args`` into ``args.out``; return that folder.

    Everything is written into a hidden sibling folder first and renamed into place at the end,
    so ``args.out`` either holds a complete clip or does not exist (ValueError for bad options).
    """
    validate(args)
    import bpy
    from . import scene as scene_mod
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = staging_dir(out, os.getpid())
    stage.mkdir()
    try:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        _setup_render(bpy, args)
        pixel_m = float(np.hypot(args.distance, args.cam_height - 0.2)) / _focal_px(args)
        records = scene_mod.build_scene(args.seed, occluder=args.occluder, pixel_m=pixel_m)
        if args.product is not None:
            scene_mod.add_product(str(args.product), args.product_at, args.product_height,
                                  args.product_rotate, records)
        mats = camera_path(args.path, args.frames, fps=args.fps, seed=args.seed, height=args.cam_height,
                           distance=args.distance, extent=args.extent, jitter_m=args.jitter_mm / 1000,
                           jitter_deg=args.jitter_deg, pan_deg=args.pan_deg, orbit_deg=args.orbit_deg)
        cam, right = _add_cameras(bpy, args, mats)
        eyes = [("", cam)] + ([("right/", right)] if right is not None else [])
        cams, per_frame = _render_frames(bpy, args, stage, eyes)
        if args.save_blend:
            bpy.ops.wm.save_as_mainfile(filepath=str(stage / "scene.blend"), check_existing=False)
        _write_outputs(bpy, args, stage, eyes, cams, records, per_frame)
        if out.exists():
            out.rmdir()
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        render(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
