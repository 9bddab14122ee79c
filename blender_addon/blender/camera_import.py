"""Build a Blender camera rig from a solved :class:`~blender_addon.core.cameras_json.CameraTrack`.

One camera object keyed on every registered frame (bulk F-curves), lens/sensor/shift from
the intrinsics, scene fps/resolution/frame range from the video, the video as the camera's
background movie clip, sparse points as a point-cloud object and the ground plane as a
Cycles shadow catcher.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..core import camera_math
from ..core.cameras_json import CameraTrack
from .keyframes import set_keys


def _varies(a: np.ndarray) -> bool:
    return bool(np.ptp(a) > 1e-9 * max(1.0, float(np.max(np.abs(a))))) if len(a) > 1 else False


def configure_scene(scene, track: CameraTrack, frame_offset: int) -> None:
    """Scene resolution (portrait too), fps and frame range from the solved video."""
    scene.render.resolution_x = track.width
    scene.render.resolution_y = track.height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = 1.0
    scene.render.pixel_aspect_y = 1.0
    if track.fps > 0:
        scene.render.fps, scene.render.fps_base = camera_math.fps_to_blender(track.fps)
    vf = track.video_frames
    scene.frame_start = int(frame_offset + vf.min())
    scene.frame_end = int(frame_offset + vf.max())


def create_camera(track: CameraTrack, name: str = "Splatstage Camera", collection=None,
                  frame_offset: int = 1):
    """Create the keyed camera object; scene frame = ``frame_offset`` + video frame index."""
    collection = collection or bpy.context.scene.collection
    cam_data = bpy.data.cameras.new(name)
    obj = bpy.data.objects.new(name, cam_data)
    collection.objects.link(obj)
    obj.rotation_mode = "QUATERNION"
    frames = track.video_frames + frame_offset

    intr = camera_math.intrinsics_to_blender(track.width, track.height, track.focal_px,
                                              track.principal_px[:, 0], track.principal_px[:, 1])
    cam_data.sensor_fit = intr["sensor_fit"]
    cam_data.sensor_width = intr["sensor_width"]
    cam_data.sensor_height = intr["sensor_height"]
    data_channels = {}
    for key in ("lens", "shift_x", "shift_y"):
        values = np.asarray(intr[key], dtype=np.float64)
        setattr(cam_data, key, float(values[0]))
        if _varies(values):
            data_channels[(key, 0)] = values
    if data_channels:
        set_keys(cam_data, data_channels, frames, f"{name} Intrinsics")

    loc, quat = camera_math.poses_to_channels(track.matrices)
    obj.location = loc[0]
    obj.rotation_quaternion = quat[0]
    channels = {("location", i): loc[:, i] for i in range(3)}
    channels.update({("rotation_quaternion", i): quat[:, i] for i in range(4)})
    set_keys(obj, channels, frames, f"{name} Action")
    return obj


def set_clip_lens(clip, width: int, height: int, focal_px: float, cx: float, cy: float,
                  k1: float = 0.0, k2: float = 0.0) -> None:
    """Describe the footage's lens on the movie clip so Blender can undistort it.

    cameras.json's ``radial2`` (COLMAP RADIAL: normalised (x, y) -> (x, y)(1 + k1 r^2 + k2 r^4))
    is Blender's POLYNOMIAL model with k3 = 0. Blender measures the principal point from the
    frame's bottom-left corner, cameras.json from the top-left.
    """
    cam = clip.tracking.camera
    cam.units = "PIXELS"
    cam.pixel_aspect = 1.0
    cam.sensor_width = 36.0
    cam.distortion_model = "POLYNOMIAL"
    cam.focal_length_pixels = float(focal_px)
    cam.principal_point_pixels = (float(cx), float(height) - float(cy))
    cam.k1, cam.k2, cam.k3 = float(k1), float(k2), 0.0


def attach_movie_clip(camera_obj, video: Path | str, frame_offset: int = 1, lens: dict | None = None):
    """Show ``video`` as the camera's background, frame 0 of the video at scene ``frame_offset``."""
    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"{video}: video not found")
    try:
        clip = bpy.data.movieclips.load(str(video), check_existing=True)
    except RuntimeError as exc:
        raise ValueError(f"{video}: Blender cannot open this video ({exc})") from None
    if clip.frame_duration <= 0 or clip.size[0] <= 0 or clip.size[1] <= 0:
        raise ValueError(f"{video}: Blender cannot decode this video")
    clip.frame_start = frame_offset
    if lens is not None:
        set_clip_lens(clip, **lens)
    cam = camera_obj.data
    cam.show_background_images = True
    bg = cam.background_images.new()
    bg.source = "MOVIE_CLIP"
    bg.clip = clip
    bg.alpha = 1.0
    bg.display_depth = "BACK"
    if hasattr(bg, "clip_user"):
        # show the footage undistorted so it lines up with the pinhole camera
        bg.clip_user.use_render_undistorted = bool(lens and (lens.get("k1") or lens.get("k2")))
    return clip


def create_point_cloud(xyz: np.ndarray, rgb: np.ndarray | None, name: str = "Splatstage Points",
                       collection=None):
    """Sparse points as a vertex-only mesh object with a per-point ``Col`` colour attribute.

    A mesh (not a PointCloud ID) so it displays, snaps and exports the same in every
    supported Blender version.
    """
    collection = collection or bpy.context.scene.collection
    xyz = np.ascontiguousarray(xyz, dtype=np.float32).reshape(-1, 3)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(xyz))
    mesh.vertices.foreach_set("co", xyz.ravel())
    if rgb is not None and len(rgb):
        attr = mesh.color_attributes.new("Col", "BYTE_COLOR", "POINT")
        rgba = np.empty((len(xyz), 4), dtype=np.float32)
        rgba[:, :3] = np.asarray(rgb, dtype=np.float32) / 255.0
        rgba[:, 3] = 1.0
        attr.data.foreach_set("color_srgb", rgba.ravel())
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    return obj


def create_ground_plane(point, normal, size: float = 20.0, name: str = "Splatstage Ground",
                        collection=None):
    """A square plane through ``point`` facing ``normal``, marked as a Cycles shadow catcher."""
    from mathutils import Matrix, Vector

    collection = collection or bpy.context.scene.collection
    h = size / 2.0
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(-h, -h, 0), (h, -h, 0), (h, h, 0), (-h, h, 0)], [], [(0, 1, 2, 3)])
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    rot = Vector((0, 0, 1)).rotation_difference(Vector(normal).normalized()).to_matrix().to_4x4()
    obj.matrix_world = Matrix.Translation(Vector(point)) @ rot
    obj.is_shadow_catcher = True
    obj["splatstage_ground"] = True
    return obj


def import_solve(scene, track: CameraTrack, *, video: Path | str | None = None,
                 points: tuple[np.ndarray, np.ndarray | None] | None = None,
                 frame_offset: int = 1, name: str = "Splatstage") -> dict:
    """Everything a camera solve brings into ``scene``, in a new collection named ``name``.

    Returns the created objects: ``camera``, and ``points``, ``ground``, ``clip`` when available.
    """
    coll = bpy.data.collections.new(name)
    scene.collection.children.link(coll)
    configure_scene(scene, track, frame_offset)
    out = {"collection": coll}
    cam = create_camera(track, f"{name} Camera", coll, frame_offset)
    scene.camera = cam
    out["camera"] = cam
    if video:
        radial2 = track.distortion.get("model", "radial2") == "radial2"
        k1 = float(track.distortion.get("k1") or 0.0) if radial2 else 0.0
        k2 = float(track.distortion.get("k2") or 0.0) if radial2 else 0.0
        lens = {"width": track.width, "height": track.height, "focal_px": float(np.median(track.focal_px)),
                "cx": float(np.median(track.principal_px[:, 0])), "cy": float(np.median(track.principal_px[:, 1])),
                "k1": k1, "k2": k2}
        out["clip"] = attach_movie_clip(cam, video, frame_offset, lens)
    extent = np.ptp(track.matrices[:, :3, 3], axis=0).max() if len(track.frames) > 1 else 0.0
    if points is not None and len(points[0]):
        out["points"] = create_point_cloud(points[0], points[1], f"{name} Points", coll)
        finite = points[0][np.all(np.isfinite(points[0]), axis=1)]
        if len(finite):
            lo, hi = np.percentile(finite, [2, 98], axis=0)
            extent = max(extent, float(np.max(hi - lo)))
    if track.ground_point is not None:
        size = float(np.clip(2.0 * extent, 4.0, 1000.0))
        out["ground"] = create_ground_plane(track.ground_point, track.ground_normal, size,
                                            f"{name} Ground", coll)
    scene.frame_set(scene.frame_start)
    return out
