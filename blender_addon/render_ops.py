"""Operators that run the backend's ``reconstruct``, ``stereo`` and ``composite`` jobs.

Like *Solve Cameras*: the parameters are built and checked by the bpy-free
:mod:`.core.job_params` (a bad input is one ``ERROR`` report, and nothing is submitted), the
job is submitted over the add-on's backend link and the operator returns at once; progress,
ETA and Cancel appear in the panels and the status bar, and when the job ends its result
handler runs on the main thread. Result files are downloaded into a private staging folder
and moved into place by :mod:`.core.delivery`, so an output path never holds a half-written
file. In background mode (``blender -b``, ``batch.py``) the operators wait for the job instead,
unless ``asynchronous`` is set (a script then drives ``link_state.tick``).
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty

from . import preferences
from .blender import link_state
from .blender.link_state import STATE
from .core import delivery, job_params
from .core.job_params import ParamError


def blend_path(p: str) -> str:
    """Absolute path of a property value; ``//`` is the .blend's folder (the temp folder while
    the file is unsaved)."""
    if not p:
        return ""
    if p.startswith("//") and not bpy.data.filepath:
        return os.path.abspath(os.path.join(tempfile.gettempdir(), p[2:]))
    return os.path.abspath(bpy.path.abspath(p))


def output_folder(chosen: str, source: str, prefix: str) -> Path:
    """``chosen`` (a path the artist set, ``//``-relative allowed), else ``prefix_<source's stem>``
    beside the saved .blend (or in Blender's temporary folder)."""
    if chosen:
        return Path(blend_path(chosen))
    stem = Path(source.rstrip("/\\")).stem or "photo"
    base = Path(bpy.data.filepath).parent if bpy.data.filepath else Path(bpy.app.tempdir or ".")
    return base / f"{prefix}_{stem}"


def solve_dir(scene) -> str:
    """The scene's camera-solve folder (the Camera Solve panel's, or its default)."""
    from .operators import _solve_dir

    return _solve_dir(scene)


def reconstruction_dir(scene) -> str:
    """The scene's reconstruction folder (default: ``<solve folder>_splats``)."""
    s = scene.splatstage
    if s.reconstruction_dir:
        return blend_path(s.reconstruction_dir)
    return solve_dir(scene).rstrip("/\\") + "_splats"


def _has(folder: str, name: str) -> bool:
    return bool(folder) and (Path(folder) / name).is_file()


def _supported_extensions() -> list[str]:
    from .blender.product import supported_extensions

    return supported_extensions()


def composite_params(scene, max_frames: int = 0) -> tuple[dict, Path]:
    """(params, output path) of the ``composite`` job for the scene's Render settings."""
    s = scene.splatstage
    solve = solve_dir(scene) if s.render_reuse and _has(solve_dir(scene), "cameras.json") else None
    recon = reconstruction_dir(scene) if s.render_reuse and _has(reconstruction_dir(scene), "splats.ply") else None
    out = job_params.output_path(blend_path(s.render_output), ".mp4", "render output")
    params = job_params.composite_params(
        blend_path(s.video_path), blend_path(s.product_path),
        at_pixel=list(s.render_pixel) if s.render_placement == "PIXEL" else None, at_frame=int(s.render_frame),
        product_height=float(s.render_product_height) or None, rotate_deg=math.degrees(s.product_rotation),
        preview=bool(s.render_preview), steps=int(s.render_steps) or None, device=s.render_device,
        solve_dir=solve, reconstruction_dir=recon, max_frames=int(max_frames) or None,
        stereo=s.stereo_layout if s.render_stereo else None,
        interaxial=float(s.stereo_interaxial) if s.render_stereo else None,
        convergence=(float(s.stereo_convergence) or None) if s.render_stereo else None,
        supported_extensions=_supported_extensions(), camera_path=_camera_path_file(scene),
        exposure=float(s.render_env_exposure), env_rotation_deg=math.degrees(s.render_env_rotation))
    if solve is not None:  # the solve folder is reused: the scale set in Blender goes with it
        from .core.set_scale import scale_params

        params.update(scale_params(s.scale_params))
    return params, out


def _camera_path_file(scene) -> str | None:
    """The Render panel's path camera, sampled over the scene's frame range into a
    camera_path.json in a fresh temporary folder (None without one)."""
    obj = scene.splatstage.render_camera
    if obj is None:
        return None
    from . import camera_paths_bpy

    folder = Path(tempfile.mkdtemp(prefix="splatstage-path-", dir=bpy.app.tempdir or None))
    return str(camera_paths_bpy.export_nerfstudio(obj, folder / "camera_path.json", scene))


def reconstruct_params(scene) -> dict:
    s = scene.splatstage
    return job_params.reconstruct_params(solve_dir(scene), video=blend_path(s.video_path) or None,
                                         steps=int(s.recon_steps), strategy=s.recon_strategy, device=s.recon_device,
                                         max_size=int(s.recon_max_size))


def stereo_params(scene, max_frames: int = 0) -> tuple[dict, Path]:
    s = scene.splatstage
    recon = reconstruction_dir(scene)
    recon = recon if s.stereo_method != "warp" and _has(recon, "splats.ply") else None
    cams = str(Path(solve_dir(scene)) / "cameras.json") if recon and _has(solve_dir(scene), "cameras.json") else None
    out = job_params.output_path(blend_path(s.stereo_output), ".mp4", "stereo output")
    params = job_params.stereo_params(
        blend_path(s.video_path), interaxial=float(s.stereo_interaxial),
        convergence=float(s.stereo_convergence) or None, layout=s.stereo_layout, method=s.stereo_method,
        debug_grid=bool(s.stereo_debug_grid), reconstruction_dir=recon, cameras=cams,
        max_frames=int(max_frames) or None)
    return params, out


def _announce(text: str) -> None:
    """An INFO line for the Info log (shown by the link timer) and the console."""
    STATE.reports.append(("INFO", text))
    print(f"Splatstage INFO: {text}", flush=True)


def run_blocking(context, kind: str, params: dict, fetch_to: Path, *, address: str = "", timeout: float = 3600.0,
                 connect_timeout: float = 10.0):
    """Run one job on its own client connection and wait for it (background mode); returns the
    result event with the files downloaded to ``fetch_to``; raises on any failure."""
    from .core import backend_link
    from .vendor import module

    prefs = preferences.get(context)
    address = address or (STATE.link.address if STATE.link else (prefs.address if prefs else "tcp://127.0.0.1:5555"))
    keys = backend_link.load_curve_keys(prefs.server_key_file if prefs else "", prefs.client_key_file if prefs else "")
    client = module("client").Client(address, server_public_key=keys[0], client_keys=keys[1], timeout=connect_timeout)
    try:
        client.connect()
        return backend_link.run_job_blocking(
            client, kind, params, fetch_to=fetch_to, timeout=timeout,
            on_progress=lambda c: print(f"{kind}: {c.get('stage', '')} {100 * float(c.get('fraction') or 0):.0f}%"
                                        f" {c.get('message', '')}", flush=True))
    finally:
        client.close()


class _BackendJob:
    """Shared execute(): build params, then submit (UI) or wait (background mode)."""

    kind = ""
    label = ""

    timeout: FloatProperty(name="Timeout", default=36000.0, min=1.0, options={"SKIP_SAVE"},
                           description="Background mode only: seconds to wait for the result")
    address: StringProperty(name="Address", default="", options={"SKIP_SAVE"},
                            description="Background mode only: backend address (empty: the link's or the preferences')")
    connect_timeout: FloatProperty(name="Connect Timeout", default=10.0, min=0.1, options={"SKIP_SAVE"},
                                   description="Background mode only: seconds to wait for each backend answer")
    asynchronous: BoolProperty(name="Asynchronous", default=False, options={"SKIP_SAVE", "HIDDEN"},
                               description="Submit over the link and return, also in background mode")

    def prepare(self, context):
        """(params, finish) where ``finish(scene, event, staging) -> str`` delivers the result
        and returns the line to report; raises ParamError."""
        raise NotImplementedError

    def execute(self, context):
        scene = context.scene
        try:
            params, finish = self.prepare(context)
        except ParamError as exc:
            self.report({"ERROR"}, f"{self.label}: {exc}")
            return {"CANCELLED"}
        staging = delivery.staging_dir(self.kind)
        if bpy.app.background and not self.asynchronous:
            return self._wait(context, params, finish, staging)
        if any(j.kind == self.kind for j in STATE.active_jobs()):
            self.report({"ERROR"}, f"{self.label}: a {self.kind} job is already running (wait for it or cancel it)")
            return {"CANCELLED"}
        name = scene.name

        def on_result(ev):
            target = bpy.data.scenes.get(name)
            if target is None:
                raise RuntimeError(f"scene {name!r} no longer exists")
            _announce(finish(target, ev, staging))

        try:
            link_state.submit(self.kind, params, self.label, fetch_to=str(staging), on_result=on_result)
        except RuntimeError as exc:
            self.report({"ERROR"}, f"{self.label}: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"{self.label}: submitted")
        return {"FINISHED"}

    def _wait(self, context, params, finish, staging):
        import shutil

        try:
            ev = run_blocking(context, self.kind, params, staging, address=self.address, timeout=self.timeout,
                              connect_timeout=self.connect_timeout)
            line = finish(context.scene, ev, staging)
        except Exception as exc:  # noqa: BLE001 - reported, the operator is cancelled
            msg = " ".join(str(exc).split()) or type(exc).__name__
            self.report({"ERROR"}, f"{self.label} failed: {msg}")
            return {"CANCELLED"}
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.report({"INFO"}, line)
        return {"FINISHED"}


class SPLATSTAGE_OT_render_composite(_BackendJob, bpy.types.Operator):
    """Composite the product into the footage on the backend (camera solve, splats, lighting,
    render, encode) and write the video to the Render panel's output"""
    bl_idname = "splatstage.render_composite"
    bl_label = "Render Composite"
    kind, label = "composite", "Composite"

    max_frames: IntProperty(name="Max Frames", default=-1, min=-1, options={"SKIP_SAVE"},
                            description="Composite only the first N frames (-1: the Render panel's setting)")

    def prepare(self, context):
        s = context.scene.splatstage
        n = self.max_frames if self.max_frames >= 0 else s.render_max_frames
        params, out = composite_params(context.scene, n)

        def finish(scene, ev, staging):
            path = delivery.deliver_file(ev.files, "composite.mp4", out, staging)
            scene.splatstage.render_result = str(path)
            summary = ev.content.get("summary") or {}
            info = [f"{summary['frames']} frames"] if "frames" in summary else []
            if params.get("stereo"):
                info.append(f"stereo {params['stereo']}")
            extra = f" ({', '.join(info)})" if info else ""
            return f"composite written to {path}{extra}"

        return params, finish


def _splat_source(obj) -> str:
    info = obj.get("splatstage_splats")
    try:
        return str(info["source"]) if info is not None else ""
    except (KeyError, TypeError):
        return ""


class SPLATSTAGE_OT_reconstruct(_BackendJob, bpy.types.Operator):
    """Train Gaussian splats from the scene's camera solve on the backend, then import them"""
    bl_idname = "splatstage.reconstruct"
    bl_label = "Reconstruct"
    kind, label = "reconstruct", "Reconstruction"

    def prepare(self, context):
        params = reconstruct_params(context.scene)
        dest = reconstruction_dir(context.scene)

        def finish(scene, ev, staging):
            from .splats import importer

            folder = delivery.deliver_folder(staging, dest)
            ply = folder / "splats.ply"
            earlier = [o for o in scene.objects if _splat_source(o) == str(ply)]
            with bpy.context.temp_override(scene=scene):
                obj = importer.import_ply(ply, name="Splats", collection=scene.collection)
            for old in earlier:  # the previous import of this folder is replaced
                mesh = old.data
                bpy.data.objects.remove(old)
                if mesh is not None and mesh.users == 0:
                    bpy.data.meshes.remove(mesh)
            summary = ev.content.get("summary") or {}
            psnr = summary.get("psnr_holdout")
            return (f"reconstruction: {len(obj.data.vertices)} splats imported from {folder}"
                    + (f", PSNR {float(psnr):.2f} dB" if isinstance(psnr, (int, float)) else ""))

        return params, finish


class SPLATSTAGE_OT_render_stereo(_BackendJob, bpy.types.Operator):
    """Make a stereo video of the footage on the backend (scene stereo from the splats, or depth warp)"""
    bl_idname = "splatstage.render_stereo"
    bl_label = "Render Stereo"
    kind, label = "stereo", "Stereo"

    max_frames: IntProperty(name="Max Frames", default=0, min=0, options={"SKIP_SAVE"},
                            description="Stop after this many frames (0: all)")

    def prepare(self, context):
        params, out = stereo_params(context.scene, self.max_frames)

        def finish(scene, ev, staging):
            path = delivery.deliver_file(ev.files, "stereo.mp4", out, staging)
            scene.splatstage.stereo_result = str(path)
            summary = ev.content.get("summary") or {}
            info = ", ".join(f"{k} {summary[k]}" for k in ("method", "layout", "frames") if k in summary)
            return f"stereo video written to {path}" + (f" ({info})" if info else "")

        return params, finish


def _frame_offset(scene) -> int:
    """Scene frame of video frame 0: the start of the camera's background clip (import default 1)."""
    cam = scene.camera
    for bg in (cam.data.background_images if cam is not None and cam.type == "CAMERA" else []):
        if bg.source == "MOVIE_CLIP" and bg.clip is not None:
            return int(bg.clip.frame_start)
    return 1


class SPLATSTAGE_OT_placement_from_cursor(bpy.types.Operator):
    """Place the rendered product at the 3D cursor: set the Render panel's pixel and frame to
    where the cursor appears in the footage at the current frame"""
    bl_idname = "splatstage.placement_from_cursor"
    bl_label = "Pixel From 3D Cursor"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        import json

        from .core.footage_pixel import footage_pixel

        scene = context.scene
        s = scene.splatstage
        video_frame = scene.frame_current - _frame_offset(scene)
        try:
            cams = Path(job_params.solve_folder(solve_dir(scene))) / "cameras.json"
            doc = json.loads(cams.read_text())
            u, v = footage_pixel(doc, video_frame, tuple(scene.cursor.location))
        except (ParamError, OSError, ValueError, KeyError) as exc:
            self.report({"ERROR"}, f"Pixel From 3D Cursor: {exc}")
            return {"CANCELLED"}
        s.render_placement, s.render_pixel, s.render_frame = "PIXEL", (u, v), video_frame
        self.report({"INFO"}, f"product at pixel ({u:.1f}, {v:.1f}) of video frame {video_frame}")
        return {"FINISHED"}


classes = (SPLATSTAGE_OT_render_composite, SPLATSTAGE_OT_reconstruct, SPLATSTAGE_OT_render_stereo,
           SPLATSTAGE_OT_placement_from_cursor)
