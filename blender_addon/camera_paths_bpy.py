"""Animated Blender cameras from :class:`shared_protocol.camera_paths.CameraPath` and back, and
the operators that add, import and export camera paths (``classes``).

Keys are written in bulk (one ``keyframe_points.add`` + ``foreach_set`` per F-curve, through
``blender.keyframes.set_keys``): location and sign-continuous ``rotation_quaternion`` on every
frame, and the lens when the focal length changes. The principal point is the image centre.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from .blender.keyframes import set_keys
from .core import camera_math
from .vendor import module

camera_paths = module("camera_paths")
CameraPath = camera_paths.CameraPath


def create_camera(path: CameraPath, name: str = "Splatstage Path", collection=None, scene=None,
                  make_active: bool = True):
    """Create a camera object animated along ``path`` (frames ``path.frames``).

    With ``make_active`` it becomes the scene camera and the scene takes the path's resolution,
    fps and frame range.
    """
    scene = scene or bpy.context.scene
    collection = collection or scene.collection
    cam_data = bpy.data.cameras.new(name)
    obj = bpy.data.objects.new(name, cam_data)
    collection.objects.link(obj)
    obj.rotation_mode = "QUATERNION"
    frames = path.frames.astype(np.float64)

    intr = camera_math.intrinsics_to_blender(path.width, path.height, path.focal_px,
                                              path.width / 2.0, path.height / 2.0)
    cam_data.sensor_fit = intr["sensor_fit"]
    cam_data.sensor_width = intr["sensor_width"]
    cam_data.sensor_height = intr["sensor_height"]
    cam_data.shift_x = cam_data.shift_y = 0.0
    lens = np.asarray(intr["lens"], dtype=np.float64)
    cam_data.lens = float(lens[0])
    if np.ptp(lens) > 0:
        set_keys(cam_data, {("lens", 0): lens}, frames, f"{name} Lens")

    loc, quat = camera_math.poses_to_channels(path.matrices)
    obj.location = loc[0]
    obj.rotation_quaternion = quat[0]
    channels = {("location", i): loc[:, i] for i in range(3)}
    channels.update({("rotation_quaternion", i): quat[:, i] for i in range(4)})
    set_keys(obj, channels, frames, f"{name} Action")

    if make_active:
        scene.camera = obj
        scene.render.resolution_x, scene.render.resolution_y = path.width, path.height
        scene.render.resolution_percentage = 100
        scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
        scene.render.fps, scene.render.fps_base = camera_math.fps_to_blender(path.fps)
        scene.frame_start, scene.frame_end = int(path.frames[0]), int(path.frames[-1])
    return obj


def sample_camera(obj, scene=None, frames=None) -> CameraPath:
    """Sample a (possibly hand-animated) camera object on ``frames`` (default: the scene range)."""
    from .vendor import module

    conventions = module("conventions")
    scene = scene or bpy.context.scene
    if obj is None or obj.type != "CAMERA":
        raise camera_paths.CameraPathError(f"{getattr(obj, 'name', obj)!r} is not a camera object")
    frames = list(range(scene.frame_start, scene.frame_end + 1)) if frames is None else list(frames)
    r = scene.render
    current = scene.frame_current
    mats, focal = [], []
    for f in frames:
        scene.frame_set(int(f))
        m = np.array(obj.matrix_world, dtype=np.float64)
        m[:3, :3] /= np.linalg.norm(m[:3, :3], axis=0)           # Blender ignores camera scale
        mats.append(m)
        cam = obj.data
        bc = conventions.BlenderCamera(
            lens=cam.lens, sensor_width=cam.sensor_width, sensor_height=cam.sensor_height,
            sensor_fit=cam.sensor_fit, shift_x=cam.shift_x, shift_y=cam.shift_y,
            resolution_x=r.resolution_x * r.resolution_percentage // 100,
            resolution_y=r.resolution_y * r.resolution_percentage // 100,
            pixel_aspect_x=r.pixel_aspect_x, pixel_aspect_y=r.pixel_aspect_y)
        focal.append(conventions.blender_to_intrinsics(bc).fy)
    scene.frame_set(current)
    return CameraPath(np.array(mats), np.array(focal), bc.resolution_x, bc.resolution_y,
                      r.fps / r.fps_base, int(frames[0]))


def import_nerfstudio(filepath: str | Path, frame_start: int = 1, name: str | None = None, **kw):
    """Read a nerfstudio camera_path.json and create its animated camera."""
    path = camera_paths.read_nerfstudio(filepath, frame_start=frame_start)
    return create_camera(path, name or Path(filepath).stem, **kw)


def export_nerfstudio(obj, filepath: str | Path, scene=None, frames=None) -> Path:
    """Write a camera object's animation as nerfstudio camera_path.json."""
    return camera_paths.write_nerfstudio(sample_camera(obj, scene, frames), filepath)


# --------------------------------------------------------------------------- operators

_KINDS = [("ORBIT", "Orbit", "Circle the target at constant distance"),
          ("SPIRAL", "Spiral", "Circle the target while the radius and height change"),
          ("DOLLY", "Dolly", "Move towards the target (optionally keeping its size: dolly zoom)"),
          ("THROUGH", "Through Solved Cameras", "Smooth C1 path through the scene camera's keyed poses")]


def _scene_format(context, cam_obj):
    scene = context.scene
    r = scene.render
    width = r.resolution_x * r.resolution_percentage // 100
    height = r.resolution_y * r.resolution_percentage // 100
    path = sample_camera(cam_obj, scene, [scene.frame_current])
    return dict(focal_px=float(path.focal_px[0]), width=width, height=height, fps=r.fps / r.fps_base), path


class SPLATSTAGE_OT_add_camera_path(bpy.types.Operator):
    """Add an animated camera on a novel path around the 3D cursor, starting from the scene camera"""
    bl_idname = "splatstage.add_camera_path"
    bl_label = "Add Camera Path"
    bl_options = {"REGISTER", "UNDO"}

    kind: EnumProperty(name="Path", items=_KINDS, default="ORBIT")
    frames: IntProperty(name="Frames", default=120, min=2, max=100000)
    degrees: FloatProperty(name="Orbit Angle", default=360.0, soft_min=-720.0, soft_max=720.0)
    turns: FloatProperty(name="Turns", default=2.0, soft_min=0.1, soft_max=10.0)
    radius_scale: FloatProperty(name="End Radius Scale", default=0.6, min=0.01, soft_max=5.0)
    rise: FloatProperty(name="Rise", default=0.5, unit="LENGTH")
    distance: FloatProperty(name="Dolly Distance", default=1.0, unit="LENGTH")
    keep_target_size: BoolProperty(name="Keep Target Size (Dolly Zoom)", default=False)
    every: IntProperty(name="Key Every", default=6, min=1, description="Use every n-th solved pose as a key")

    @classmethod
    def poll(cls, context):
        return context.scene.camera is not None

    def execute(self, context):
        scene = context.scene
        src = scene.camera
        try:
            fmt, here = _scene_format(context, src)
            target = np.array(scene.cursor.location, dtype=np.float64)
            eye = here.matrices[0, :3, 3]
            start = scene.frame_start
            if self.kind == "ORBIT":
                path = camera_paths.orbit(target, eye, self.frames, degrees=self.degrees, frame_start=start, **fmt)
            elif self.kind == "SPIRAL":
                path = camera_paths.spiral(target, eye, self.frames, turns=self.turns, radius_scale=self.radius_scale,
                                           rise=self.rise, frame_start=start, **fmt)
            elif self.kind == "DOLLY":
                path = camera_paths.dolly(eye, target, self.frames, distance=self.distance,
                                          keep_target_size=self.keep_target_size, frame_start=start, **fmt)
            else:
                solved = sample_camera(src, scene)
                path = camera_paths.through_cameras(solved.matrices, solved.focal_px, solved.frames,
                                                    width=fmt["width"], height=fmt["height"], fps=fmt["fps"],
                                                    every=self.every)
        except (camera_paths.CameraPathError, ValueError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        obj = create_camera(path, f"Splatstage {self.kind.title()} Path", make_active=True)
        self.report({"INFO"}, f"{obj.name}: {len(path)} frames")
        return {"FINISHED"}


class SPLATSTAGE_OT_import_camera_path(bpy.types.Operator, ImportHelper):
    """Import a nerfstudio camera_path.json as an animated camera"""
    bl_idname = "splatstage.import_camera_path"
    bl_label = "Import Camera Path (nerfstudio)"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})
    frame_start: IntProperty(name="Start Frame", default=1)

    def execute(self, context):
        try:
            obj = import_nerfstudio(self.filepath, frame_start=self.frame_start)
        except camera_paths.CameraPathError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"imported {obj.name}")
        return {"FINISHED"}


class SPLATSTAGE_OT_export_camera_path(bpy.types.Operator, ExportHelper):
    """Export the scene camera's animation over the frame range as nerfstudio camera_path.json"""
    bl_idname = "splatstage.export_camera_path"
    bl_label = "Export Camera Path (nerfstudio)"

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return context.scene.camera is not None

    def execute(self, context):
        try:
            out = export_nerfstudio(context.scene.camera, self.filepath, context.scene)
        except (camera_paths.CameraPathError, ValueError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"wrote {out}")
        return {"FINISHED"}


classes = (SPLATSTAGE_OT_add_camera_path, SPLATSTAGE_OT_import_camera_path, SPLATSTAGE_OT_export_camera_path)
