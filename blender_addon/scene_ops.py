"""*Scene from Image*: a splat scene from one photo (or 2-8 photos of one place) made by the
backend's ``scene`` job, imported as a solved camera along the scene's trajectory, its points
and its splats (the same import as *Import Cameras* and *Import Splats*)."""
from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import FloatProperty, IntProperty, PointerProperty, StringProperty

from .core.job_params import ParamError
from .core.scene_job import scene_params
from .panels import _Panel, draw_job
from .render_ops import _BackendJob, blend_path, output_folder
from .blender.link_state import STATE


class SplatstageSceneImageProps(bpy.types.PropertyGroup):
    image_path: StringProperty(name="Photo", subtype="FILE_PATH", default="",
                               description="One photo, or a folder of 2-8 photos of one place")
    prompt: StringProperty(name="Prompt", default="", description="Text prompt of the inpainting model")
    views: IntProperty(name="Views", default=8, min=1, max=256, description="Views generated along the trajectory")
    steps: IntProperty(name="Steps", default=300, min=0, description="Training steps of each refine round")
    rounds: IntProperty(name="Rounds", default=1, min=0, max=16, description="Render, denoise, retrain rounds")
    fov: FloatProperty(name="Field of View", default=0.0, min=0.0, max=179.0,
                       description="Horizontal field of view of the photo in degrees (0: its EXIF, else 60)")
    output_dir: StringProperty(name="Scene Folder", subtype="DIR_PATH", default="",
                               description="Where the scene goes (empty: beside the .blend file)")
    result: StringProperty(name="Result", default="")


def scene_dir(scene) -> Path:
    p = scene.splatstage_scene
    return output_folder(p.output_dir, p.image_path, "splatstage_scene")


def import_scene(context, folder: str | Path) -> str:
    """Import a scene folder's cameras.json (+ points.ply) and splats.ply; returns the line to report."""
    from .operators import import_solve_files
    from .splats import importer

    folder = Path(folder)
    cams, ply = folder / "cameras.json", folder / "splats.ply"
    if not cams.is_file() or not ply.is_file():
        raise ValueError(f"{folder} is not a scene folder (cameras.json and splats.ply)")
    pts = folder / "points.ply"
    import_solve_files(context, str(cams), str(pts) if pts.is_file() else "", "")
    obj = importer.import_ply(ply, name="Scene Splats", collection=context.scene.collection)
    n = context.scene.frame_end - context.scene.frame_start + 1
    line = f"scene: camera over {n} views, {len(obj.data.vertices)} splats from {folder}"
    context.scene.splatstage_scene.result = line
    return line


class SPLATSTAGE_OT_scene_from_image(_BackendJob, bpy.types.Operator):
    """Make a splat scene from the photo on the backend (outpaint, depth, warp-and-inpaint along a
    camera path, refine), then import its camera path and splats"""
    bl_idname = "splatstage.scene_from_image"
    bl_label = "Scene from Image"
    kind, label = "scene", "Scene from Image"

    def prepare(self, context):
        from .core import delivery

        p = context.scene.splatstage_scene
        params = scene_params(blend_path(p.image_path) if p.image_path else "", p.prompt, p.views, p.steps,
                              p.rounds, p.fov)
        dest = scene_dir(context.scene)

        def finish(scene, ev, staging):
            folder = delivery.deliver_folder(staging, dest)
            with bpy.context.temp_override(scene=scene):
                return import_scene(bpy.context, folder)

        return params, finish


class SPLATSTAGE_OT_import_scene(bpy.types.Operator):
    """Import a scene folder made by Scene from Image (cameras.json, points.ply, splats.ply)"""
    bl_idname = "splatstage.import_scene"
    bl_label = "Import Scene"
    bl_options = {"REGISTER", "UNDO"}

    directory: StringProperty(name="Scene Folder", subtype="DIR_PATH", default="")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        try:
            line = import_scene(context, blend_path(self.directory))
        except (ValueError, OSError, RuntimeError, ParamError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, line)
        return {"FINISHED"}


class SPLATSTAGE_PT_scene_from_image(_Panel, bpy.types.Panel):
    bl_label = "Scene from Image"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        p = context.scene.splatstage_scene
        col = self.layout.column()
        col.prop(p, "image_path")
        col.prop(p, "prompt")
        row = col.row(align=True)
        row.prop(p, "views")
        row.prop(p, "steps")
        row.prop(p, "rounds")
        col.prop(p, "fov")
        col.prop(p, "output_dir")
        col.operator("splatstage.scene_from_image", icon="IMAGE_DATA")
        col.operator("splatstage.import_scene", icon="IMPORT")
        draw_job(col, STATE.job_of_kind("scene"))
        if p.result:
            col.label(text=p.result[:80], icon="CHECKMARK")


classes = (SplatstageSceneImageProps, SPLATSTAGE_OT_scene_from_image, SPLATSTAGE_OT_import_scene,
           SPLATSTAGE_PT_scene_from_image)


def register_props() -> None:
    bpy.types.Scene.splatstage_scene = PointerProperty(type=SplatstageSceneImageProps)


def unregister_props() -> None:
    del bpy.types.Scene.splatstage_scene
