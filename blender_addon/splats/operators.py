"""Operators for splats (imports bpy): import a splats.ply, change the preview."""
from __future__ import annotations

import bpy
from bpy.props import FloatProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from . import importer, preview
from .ply import SplatFileError


class SPLATSTAGE_OT_import_splats(bpy.types.Operator, ImportHelper):
    """Import a 3D Gaussian Splatting PLY (splats.ply) as a point object with splat attributes and a preview"""
    bl_idname = "splatstage.import_splats"
    bl_label = "Import Splats (.ply)"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".ply"
    filter_glob: StringProperty(default="*.ply", options={"HIDDEN"})
    display_fraction: FloatProperty(name="Display Fraction", default=-1.0, min=-1.0, max=1.0,
                                    description="Share of splats the preview draws (-1: automatic, "
                                                "at most 200,000 splats)")
    splat_size: FloatProperty(name="Splat Size", default=2.0, min=0.01, soft_max=5.0,
                              description="Preview ellipsoid size in standard deviations")

    def execute(self, context):
        frac = None if self.display_fraction < 0 else self.display_fraction
        try:
            obj = importer.import_ply(self.filepath, display_fraction=frac, splat_size=self.splat_size)
        except (SplatFileError, ValueError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        for o in context.selected_objects:
            o.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        self.report({"INFO"}, f"{obj.name}: {len(obj.data.vertices)} splats")
        return {"FINISHED"}


class SPLATSTAGE_OT_splat_display(bpy.types.Operator):
    """Set the splat preview's display fraction and splat size on the active splat object"""
    bl_idname = "splatstage.splat_display"
    bl_label = "Splat Display"
    bl_options = {"REGISTER", "UNDO"}

    display_fraction: FloatProperty(name="Display Fraction", default=1.0, min=0.0, max=1.0)
    splat_size: FloatProperty(name="Splat Size", default=2.0, min=0.01, soft_max=5.0)

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.modifiers.get(preview.MODIFIER_NAME) is not None

    def execute(self, context):
        preview.set_inputs(context.active_object, display_fraction=self.display_fraction,
                           splat_size=self.splat_size)
        return {"FINISHED"}


classes = (SPLATSTAGE_OT_import_splats, SPLATSTAGE_OT_splat_display)
