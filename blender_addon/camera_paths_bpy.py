"""Animated Blender cameras from :class:`~blender_addon.camera_paths.CameraPath` and back.

Keys are written in bulk (one ``keyframe_points.add`` + ``foreach_set`` per F-curve, through
``blender.keyframes.set_keys``): location and sign-continuous ``rotation_quaternion`` on every
frame, and the lens when the focal length changes. The principal point is the image centre.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from . import camera_paths
from .blender.keyframes import set_keys
from .camera_paths import CameraPath
from .core import camera_math


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
