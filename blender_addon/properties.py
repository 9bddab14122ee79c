"""Per-scene settings (``scene.splatstage``) used by the panels and operators."""
from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty, PointerProperty,
                       StringProperty)

AXIS_ITEMS = [
    ("LARGEST", "Largest", "The largest of width, depth and height"),
    ("HEIGHT", "Height", "Extent along Z"),
    ("WIDTH", "Width", "Extent along X"),
    ("DEPTH", "Depth", "Extent along Y"),
]

DEVICE_ITEMS = [
    ("auto", "Auto", "CUDA when the backend has it, else CPU"),
    ("cpu", "CPU", "The backend's CPU"),
    ("cuda", "CUDA", "The backend's GPU (fails when it has none)"),
]
STRATEGY_ITEMS = [
    ("default", "Default", "gsplat's default densification (split, clone, prune)"),
    ("mcmc", "MCMC", "3DGS-MCMC densification (a capped number of splats)"),
]
LAYOUT_ITEMS = [
    ("sbs", "Side by Side", "Left and right eye side by side, full width each"),
    ("half-sbs", "Half Side by Side", "Side by side, each eye squeezed to half width"),
    ("tab", "Top and Bottom", "Left eye above the right eye"),
    ("anaglyph", "Anaglyph", "Red-cyan anaglyph"),
]
METHOD_ITEMS = [
    ("auto", "Auto", "Scene stereo when a reconstruction exists, else depth warp"),
    ("scene", "Scene", "Render the right eye from the reconstruction's splats"),
    ("warp", "Warp", "Warp the footage by its depth and fill the holes"),
]
SCALE_MODE_ITEMS = [
    ("SELECTED", "Two Objects", "The distance between the two selected objects (e.g. empties snapped to points)"),
    ("CURSOR", "Cursor to Active", "The distance between the 3D cursor and the active object"),
    ("CAMERA", "Camera Height", "The solve camera's height above the ground at the current frame"),
]
PLACEMENT_ITEMS = [
    ("DEFAULT", "Default", "The ground under the centre of the lower third of the frame"),
    ("PIXEL", "Pixel", "The ground under a pixel of one frame"),
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
    scale_mode: EnumProperty(name="Reference", items=SCALE_MODE_ITEMS, default="SELECTED",
                             description="What Set Scale measures")
    scale_distance: FloatProperty(name="Distance", default=1.0, min=0.0001, soft_max=100.0, unit="LENGTH",
                                  description="Its real size: the distance between the references, or the "
                                              "camera's height above the ground")
    scale_record: StringProperty(name="Scale", default="", description="How the solve's scale was set (JSON)")
    scale_params: StringProperty(name="Scale Reference", default="",
                                 description="Set Scale's reference for jobs that reuse the solve folder (JSON)")
    product_path: StringProperty(name="Product", subtype="FILE_PATH", description="GLB model to insert")
    product_size: FloatProperty(name="Real Size", default=0.3, min=0.0001, soft_max=10.0, unit="LENGTH",
                                description="Real-world size of the product along the chosen axis")
    product_axis: EnumProperty(name="Axis", items=AXIS_ITEMS, default="LARGEST")
    product_rotation: FloatProperty(name="Rotation", default=0.0, subtype="ANGLE",
                                    description="Rotation about the ground plane's normal")

    reconstruction_dir: StringProperty(name="Splats Folder", subtype="DIR_PATH",
                                       description="Where the reconstruction's files (splats.ply) are saved "
                                                   "(empty: beside the solve folder)")
    recon_steps: IntProperty(name="Steps", default=7000, min=1, soft_max=30000,
                             description="Training steps of the reconstruction")
    recon_strategy: EnumProperty(name="Strategy", items=STRATEGY_ITEMS, default="default")
    recon_device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="auto")
    recon_max_size: IntProperty(name="Max Size", default=1600, min=16, max=16384, subtype="PIXEL",
                                description="Longest side of the training images (larger footage is scaled down)")

    stereo_interaxial: FloatProperty(name="Interaxial", default=0.065, min=0.001, soft_max=1.0, unit="LENGTH",
                                     precision=3, description="Distance between the two eyes")
    stereo_convergence: FloatProperty(name="Convergence", default=0.0, min=0.0, soft_max=100.0, unit="LENGTH",
                                      description="Zero-parallax distance (0: the median depth of the first frame)")
    stereo_layout: EnumProperty(name="Layout", items=LAYOUT_ITEMS, default="sbs")
    stereo_method: EnumProperty(name="Method", items=METHOD_ITEMS, default="auto")
    stereo_debug_grid: BoolProperty(name="Debug Grid", default=False,
                                    description="Write the 2x2 grid (left, depth, occlusion mask, warped right) "
                                                "instead of the stereo video")
    stereo_output: StringProperty(name="Output", subtype="FILE_PATH", default="//splatstage_stereo.mp4",
                                  description="Stereo video to write (.mp4)")
    stereo_result: StringProperty(name="Stereo Result", default="")

    render_placement: EnumProperty(name="Placement", items=PLACEMENT_ITEMS, default="DEFAULT")
    render_pixel: FloatVectorProperty(name="Pixel", size=2, default=(0.0, 0.0), min=0.0,
                                      description="Footage pixel (U, V from the top-left corner) whose ground "
                                                  "point the product stands on")
    render_frame: IntProperty(name="Frame", default=0, min=0, description="Video frame (0-based) of the pixel")
    render_product_height: FloatProperty(name="Height", default=0.0, min=0.0, soft_max=10.0, unit="LENGTH",
                                         description="Product height (0: the model's own size)")
    render_preview: BoolProperty(name="Preview", default=False,
                                 description="Reduced settings for a quick look (240 px, 8 samples, "
                                             "60 training steps)")
    render_steps: IntProperty(name="Steps", default=0, min=0, soft_max=30000,
                              description="Reconstruction training steps (0: the job's default)")
    render_device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="auto")
    render_max_frames: IntProperty(name="Frames", default=0, min=0,
                                   description="Composite only the first N frames of the footage (0: all)")
    render_stereo: BoolProperty(name="Stereo", default=False,
                                description="Render a stereo composite with the Stereo panel's layout, interaxial "
                                            "and convergence (0: converge on the product)")
    render_env_exposure: FloatProperty(name="Light Exposure", default=0.0, soft_min=-5.0, soft_max=5.0,
                                       description="Exposure of the environment light rendered from the splats, in "
                                                   "EV (stops)")
    render_env_rotation: FloatProperty(name="Light Rotation", default=0.0, subtype="ANGLE",
                                       description="Turn the environment light from the splats about the up axis")
    render_camera: PointerProperty(name="Camera Path", type=bpy.types.Object,
                                   poll=lambda self, obj: obj.type == "CAMERA",
                                   description="Render along this animated camera (e.g. from Add Camera Path) with the "
                                               "splat render as background, instead of the footage's cameras")
    render_reuse: BoolProperty(name="Reuse Solve and Splats", default=True,
                               description="Use this scene's camera solve and reconstruction when they exist, "
                                           "instead of computing them again")
    render_output: StringProperty(name="Output", subtype="FILE_PATH", default="//splatstage_composite.mp4",
                                  description="Composited video to write (.mp4)")
    render_result: StringProperty(name="Render Result", default="")


classes = (SPLATSTAGE_PG_scene,)


def register_props() -> None:
    bpy.types.Scene.splatstage = bpy.props.PointerProperty(type=SPLATSTAGE_PG_scene)


def unregister_props() -> None:
    del bpy.types.Scene.splatstage
