"""Operators: everything the panels do, scriptable (``bpy.ops.splatstage.*``)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from . import preferences
from .blender import link_state
from .blender.atomic import atomic
from .blender.link_state import STATE
from .core import cameras_json, local_backend, ply_points
from .properties import AXIS_ITEMS


def _abspath(p: str) -> str:
    return os.path.abspath(bpy.path.abspath(p)) if p else ""


class SPLATSTAGE_OT_report(bpy.types.Operator):
    """Show queued backend messages in the Info log"""
    bl_idname = "splatstage.report"
    bl_label = "Splatstage Report"
    bl_options = {"INTERNAL"}

    messages: StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        for line in self.messages.splitlines():
            level, _, text = line.partition("\t")
            self.report({level if level in {"INFO", "WARNING", "ERROR"} else "INFO"}, text)
        return {"FINISHED"}


class SPLATSTAGE_OT_connect(bpy.types.Operator):
    """Connect to the backend (starting a local one first if enabled in the preferences)"""
    bl_idname = "splatstage.connect"
    bl_label = "Connect"

    address: StringProperty(name="Address", default="", description="Override the preferences' address",
                            options={"SKIP_SAVE"})

    def execute(self, context):
        prefs = preferences.get(context)
        address = self.address or (prefs.address if prefs else "tcp://127.0.0.1:5555")
        if prefs is not None and prefs.start_local and (STATE.server_proc is None or STATE.server_proc.poll() is not None):
            if bpy.ops.splatstage.start_backend() != {"FINISHED"}:
                return {"CANCELLED"}
        link_state.connect(address, prefs.server_key_file if prefs else "", prefs.client_key_file if prefs else "")
        self.report({"INFO"}, f"connecting to {address}")
        return {"FINISHED"}


class SPLATSTAGE_OT_disconnect(bpy.types.Operator):
    """Close the connection to the backend"""
    bl_idname = "splatstage.disconnect"
    bl_label = "Disconnect"

    def execute(self, context):
        link_state.disconnect()
        return {"FINISHED"}


class SPLATSTAGE_OT_start_backend(bpy.types.Operator):
    """Start 'splatstage serve' as a separate process with the preferences' Python"""
    bl_idname = "splatstage.start_backend"
    bl_label = "Start Local Backend"

    def execute(self, context):
        prefs = preferences.get(context)
        python = _abspath(prefs.backend_python) if prefs else ""
        address = prefs.address if prefs else "tcp://127.0.0.1:5555"
        cache = _abspath(prefs.backend_cache) if prefs and prefs.backend_cache else os.path.join(
            tempfile.gettempdir(), "splatstage-cache")
        root = _abspath(prefs.backend_root) if prefs and prefs.backend_root else os.path.expanduser("~")
        local_backend.stop(STATE.server_proc)
        try:
            STATE.server_proc = local_backend.start(python, address, cache, root,
                                                    os.path.join(cache, "server.log"))
        except (OSError, ValueError) as exc:
            self.report({"ERROR"}, f"cannot start the backend: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"local backend started (pid {STATE.server_proc.pid})")
        return {"FINISHED"}


class SPLATSTAGE_OT_stop_backend(bpy.types.Operator):
    """Stop the local backend this Blender started"""
    bl_idname = "splatstage.stop_backend"
    bl_label = "Stop Local Backend"

    def execute(self, context):
        link_state.disconnect()
        local_backend.stop(STATE.server_proc)
        STATE.server_proc = None
        return {"FINISHED"}


class SPLATSTAGE_OT_load_footage(bpy.types.Operator):
    """Use a video as footage: set the scene's fps, resolution and frame range from it"""
    bl_idname = "splatstage.load_footage"
    bl_label = "Load Footage"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="Video", subtype="FILE_PATH", default="")
    frame_start: IntProperty(name="Start", default=0, min=0)
    frame_end: IntProperty(name="End", default=-1, min=-1)
    stride: IntProperty(name="Stride", default=1, min=1)

    def invoke(self, context, event):
        s = context.scene.splatstage
        self.filepath = self.filepath or s.video_path
        if not self.filepath:
            context.window_manager.fileselect_add(self)
            return {"RUNNING_MODAL"}
        self.frame_start, self.frame_end, self.stride = s.frame_start, s.frame_end, s.stride
        return self.execute(context)

    def execute(self, context):
        from .blender import footage

        path = _abspath(self.filepath)
        try:
            info = footage.apply_to_scene(context.scene, path, self.frame_start, self.frame_end)
        except (OSError, ValueError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        s = context.scene.splatstage
        s.video_path, s.frame_start, s.frame_end, s.stride = path, self.frame_start, self.frame_end, self.stride
        self.report({"INFO"}, f"{Path(path).name}: {info['width']}x{info['height']} @ {info['fps']:.3f} fps, "
                              f"{info['frames']} frames")
        return {"FINISHED"}


def import_solve_files(context, cameras_path: str, points_path: str = "", video_path: str = "",
                       frame_offset: int = 1) -> dict:
    """Import cameras.json (+ points.ply, + video) into the scene; raises ValueError on bad input."""
    from .blender import camera_import

    track = cameras_json.load(cameras_path)
    points = None
    if points_path:
        points = ply_points.read_points(points_path)
    if video_path and not Path(video_path).is_file():
        raise ValueError(f"{video_path}: video not found")
    if bpy.context.mode != "OBJECT" and context.view_layer.objects.active is not None:
        bpy.ops.object.mode_set(mode="OBJECT")
    with atomic(context):
        out = camera_import.import_solve(context.scene, track, video=video_path or None, points=points,
                                         frame_offset=frame_offset)
        from .set_scale_bpy import mark_imported

        mark_imported(context.scene, out, track.stats)
        return out


class SPLATSTAGE_OT_import_cameras(bpy.types.Operator):
    """Import a solved camera (cameras.json), its sparse points and the footage as background"""
    bl_idname = "splatstage.import_cameras"
    bl_label = "Import Cameras"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="cameras.json", subtype="FILE_PATH", default="")
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})
    points_path: StringProperty(name="Points", subtype="FILE_PATH", default="",
                                description="Sparse points PLY (empty: points.ply beside cameras.json)")
    video_path: StringProperty(name="Video", subtype="FILE_PATH", default="",
                               description="Footage for the camera background (empty: the scene's footage)")
    frame_offset: IntProperty(name="Frame Offset", default=1, description="Scene frame of video frame 0")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        cams = _abspath(self.filepath)
        pts = _abspath(self.points_path) if self.points_path else ""
        if not pts and cams and (Path(cams).parent / "points.ply").is_file():
            pts = str(Path(cams).parent / "points.ply")
        video = _abspath(self.video_path or context.scene.splatstage.video_path)
        try:
            out = import_solve_files(context, cams, pts, video, self.frame_offset)
        except (ValueError, OSError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        n = context.scene.frame_end - context.scene.frame_start + 1
        self.report({"INFO"}, f"imported camera over {n} frames"
                              + (f", {len(out['points'].data.vertices)} points" if "points" in out else ""))
        return {"FINISHED"}


def _solve_params(scene) -> dict:
    s = scene.splatstage
    params = {"input": _abspath(s.video_path), "stride": int(s.stride), "start": int(s.frame_start)}
    if s.frame_end >= 0:
        params["stop"] = int(s.frame_end) + 1
    return params


def _solve_dir(scene) -> str:
    s = scene.splatstage
    if s.solve_dir:
        return _abspath(s.solve_dir)
    base = Path(bpy.data.filepath).parent if bpy.data.filepath else Path(tempfile.gettempdir())
    return str(base / f"splatstage_solve_{Path(s.video_path).stem or 'footage'}")


def finish_solve(scene_name: str, fetch_to: str, event) -> None:
    """Import a finished ``poses`` job's cameras.json + points.ply into the scene."""
    scene = bpy.data.scenes.get(scene_name)
    if scene is None:
        raise RuntimeError(f"scene {scene_name!r} no longer exists")
    cams = event.files.get("cameras.json") or str(Path(fetch_to) / "cameras.json")
    pts = event.files.get("points.ply", "")
    footage = _abspath(scene.splatstage.video_path)
    with bpy.context.temp_override(scene=scene):
        import_solve_files(bpy.context, cams, pts, footage if Path(footage).is_file() else "")
    summary = event.content.get("summary") or {}
    scene.splatstage.solve_summary = ", ".join(f"{k}: {v}" for k, v in list(summary.items())[:6])


class SPLATSTAGE_OT_solve_cameras(bpy.types.Operator):
    """Run the camera solve on the backend for the footage (a video or an image folder), then
    import the cameras (waits in background mode)"""
    bl_idname = "splatstage.solve_cameras"
    bl_label = "Solve Cameras"

    timeout: FloatProperty(name="Timeout", default=3600.0, min=1.0, options={"SKIP_SAVE"},
                           description="Background mode only: seconds to wait for the result")
    address: StringProperty(name="Address", default="", options={"SKIP_SAVE"},
                            description="Background mode only: backend address (empty: the preferences')")
    connect_timeout: FloatProperty(name="Connect Timeout", default=10.0, min=0.1, options={"SKIP_SAVE"},
                                   description="Background mode only: seconds to wait for each backend answer")

    def execute(self, context):
        scene = context.scene
        source = Path(_abspath(scene.splatstage.video_path)) if scene.splatstage.video_path else None
        if source is None or not (source.is_file() or source.is_dir()):
            self.report({"ERROR"}, f"{scene.splatstage.video_path or '(no video)'}: video or image folder not found")
            return {"CANCELLED"}
        params, dest = _solve_params(scene), _solve_dir(scene)
        if bpy.app.background:
            return self._run_blocking(context, params, dest)
        try:
            link_state.submit("poses", params, "Camera solve", fetch_to=dest,
                              on_result=lambda ev, name=scene.name: finish_solve(name, dest, ev))
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}

    def _run_blocking(self, context, params, dest):
        from .core import backend_link
        from .vendor import module

        prefs = preferences.get(context)
        address = self.address or (STATE.link.address if STATE.link else
                                   (prefs.address if prefs else "tcp://127.0.0.1:5555"))
        try:
            keys = backend_link.load_curve_keys(prefs.server_key_file if prefs else "",
                                                prefs.client_key_file if prefs else "")
            client = module("client").Client(address, server_public_key=keys[0], client_keys=keys[1],
                                             timeout=self.connect_timeout)
            try:
                client.connect()
                ev = backend_link.run_job_blocking(
                    client, "poses", params, fetch_to=dest, timeout=self.timeout,
                    on_progress=lambda c: print(f"poses: {c.get('stage', '')} {100 * float(c.get('fraction') or 0):.0f}%"
                                                f" {c.get('message', '')}", flush=True))
            finally:
                client.close()
            finish_solve(context.scene.name, dest, ev)
        except Exception as exc:  # noqa: BLE001 - reported, the operator is cancelled
            self.report({"ERROR"}, f"camera solve failed: {exc}")
            return {"CANCELLED"}
        return {"FINISHED"}


class SPLATSTAGE_OT_cancel_job(bpy.types.Operator):
    """Cancel a running backend job (all running jobs when no tag is given)"""
    bl_idname = "splatstage.cancel_job"
    bl_label = "Cancel"

    tag: StringProperty(default="", options={"SKIP_SAVE"})

    def execute(self, context):
        tags = [self.tag] if self.tag else [j.tag for j in STATE.active_jobs()]
        for tag in tags:
            link_state.cancel(tag)
        return {"FINISHED"}


class SPLATSTAGE_OT_insert_product(bpy.types.Operator):
    """Insert a GLB product on the ground plane at the 3D cursor, scaled to its real size"""
    bl_idname = "splatstage.insert_product"
    bl_label = "Insert Product"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="GLB", subtype="FILE_PATH", default="")
    filter_glob: StringProperty(default="*.glb", options={"HIDDEN"})
    dimension: FloatProperty(name="Real Size", default=0.0, min=0.0, unit="LENGTH",
                             description="Real-world size along the axis (0: the scene's Product setting)")
    own_size: BoolProperty(name="Model's Own Size", default=False,
                           description="Keep the size the file gives the model (glTF units are metres); "
                                       "ignores Real Size")
    axis: EnumProperty(name="Axis", items=AXIS_ITEMS, default="LARGEST")
    rotation_z: FloatProperty(name="Rotation", default=0.0, subtype="ANGLE")

    def invoke(self, context, event):
        s = context.scene.splatstage
        self.filepath = self.filepath or s.product_path
        self.dimension = self.dimension or s.product_size
        self.axis, self.rotation_z = s.product_axis, s.product_rotation
        if not self.filepath:
            context.window_manager.fileselect_add(self)
            return {"RUNNING_MODAL"}
        return self.execute(context)

    def execute(self, context):
        from .blender.product import ProductError, insert_product

        dim = None if self.own_size else (self.dimension or context.scene.splatstage.product_size)
        try:
            root = insert_product(context, _abspath(self.filepath), dimension=dim, axis=self.axis,
                                  rotation_z=self.rotation_z)
        except ProductError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if root.get("splatstage_warnings"):
            self.report({"WARNING"}, f"{root.name}: {root['splatstage_warnings']}")
        # the Render panel's composite shows the product at the size it got here
        context.scene.splatstage.render_product_height = float(root["splatstage_height_m"])
        self.report({"INFO"}, f"inserted {root.name} ({root['splatstage_dimension_m']:.3f} m {self.axis.lower()}"
                              f"{', its own size' if self.own_size else ''})")
        return {"FINISHED"}


classes = (
    SPLATSTAGE_OT_report, SPLATSTAGE_OT_connect, SPLATSTAGE_OT_disconnect, SPLATSTAGE_OT_start_backend,
    SPLATSTAGE_OT_stop_backend, SPLATSTAGE_OT_load_footage, SPLATSTAGE_OT_import_cameras,
    SPLATSTAGE_OT_solve_cameras, SPLATSTAGE_OT_cancel_job, SPLATSTAGE_OT_insert_product,
)
