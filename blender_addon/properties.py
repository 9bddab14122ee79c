"""Per-scene settings (``scene.splatstage``) used by the panels and operators."""
from __future__ import annotations

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, StringProperty

AXIS_ITEMS = [
    ("LARGEST", "Largest", "The largest of width, depth and height"),
    ("HEIGHT", "Height", "Extent along Z"),
    ("WIDTH", "Width", "Extent along X"),
    ("DEPTH", "Depth", "Extent along Y"),
]


class SPLATSTAGE_PG_scene(bpy.types.PropertyGroup):
    """Footage, solve and product settings of one scene."""

    __slots__ = ()
    video_path: StringProperty(name="Video", subtype="FILE_PATH",
                               description="Footage to matchmove: a video, or a folder of images for the solve")
    frame_start: IntProperty(name="Start", default=0, min=0, description="First video frame (0-based)")
    frame_end: IntProperty(name="End", default=-1, min=-1, description="Last video frame (-1: to the end)")
    stride: IntProperty(name="Stride", default=1, min=1, max=100, description="Use every n-th frame")
    solve_dir: StringProperty(name="Solve Folder", subtype="DIR_PATH",
                              description="Where the camera solve's files are saved")
    solve_summary: StringProperty(name="Solve Summary", default="")
    product_path: StringProperty(name="Product", subtype="FILE_PATH", description="GLB model to insert")
    product_size: FloatProperty(name="Real Size", default=0.3, min=0.0001, soft_max=10.0, unit="LENGTH",
                                description="Real-world size of the product along the chosen axis")
    product_axis: EnumProperty(name="Axis", items=AXIS_ITEMS, default="LARGEST")
    product_rotation: FloatProperty(name="Rotation", default=0.0, subtype="ANGLE",
                                    description="Rotation about the ground plane's normal")


classes = (SPLATSTAGE_PG_scene,)


def register_props() -> None:
    bpy.types.Scene.splatstage = bpy.props.PointerProperty(type=SPLATSTAGE_PG_scene)


def unregister_props() -> None:
    del bpy.types.Scene.splatstage
