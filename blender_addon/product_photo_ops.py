"""*Product from Photo*: a product made from one photo by the backend's ``product`` job (splats,
a mesh GLB and a turntable), delivered into a folder and set as the Product panel's model so
*Insert Product* places it."""
from __future__ import annotations

import json
from pathlib import Path

import bpy
from bpy.props import BoolProperty, FloatProperty, PointerProperty, StringProperty

from .core.product_job import product_params
from .panels import SPLATSTAGE_PT_product, draw_job
from .render_ops import _BackendJob, blend_path, output_folder
from .blender.link_state import STATE


class SplatstageProductPhotoProps(bpy.types.PropertyGroup):
    photo_path: StringProperty(name="Photo", subtype="FILE_PATH", default="",
                               description="One product photo (a PNG with alpha is cut out exactly)")
    height: FloatProperty(name="Height", default=0.3, min=0.001, soft_max=5.0, unit="LENGTH",
                          description="The product's real height: one photo cannot tell its size")
    elevation: FloatProperty(name="Elevation", default=0.0, min=-89.0, max=89.0,
                             description="The photo's camera elevation above the horizon, in degrees")
    box: StringProperty(name="Box", default="", description="x0,y0,x1,y1 around the product for GrabCut "
                                                            "(empty: the centre 80 %)")
    preview: BoolProperty(name="Preview", default=False, description="Reduced settings for CPU-only backends")
    output_dir: StringProperty(name="Product Folder", subtype="DIR_PATH", default="",
                               description="Where the product goes (empty: beside the .blend file)")
    result: StringProperty(name="Result", default="")


def product_dir(scene) -> Path:
    p = scene.splatstage_product_photo
    return output_folder(p.output_dir, p.photo_path, "splatstage_product")


def use_product(scene, folder: str | Path) -> str:
    """Make the folder's product.glb the Product panel's model at its real size; the line to report."""
    folder = Path(folder)
    glb, info = folder / "product.glb", folder / "product.json"
    if not glb.is_file() or not info.is_file():
        raise ValueError(f"{folder} is not a product folder (product.glb and product.json)")
    summary = json.loads(info.read_text())
    s = scene.splatstage
    s.product_path = str(glb)
    s.product_size = float(summary["height_m"])
    s.product_axis = "HEIGHT"
    line = (f"product: {glb} ({summary['height_m']:g} m tall, {summary['num_gaussians']} splats); "
            f"Insert Product places it")
    scene.splatstage_product_photo.result = line
    return line


class SPLATSTAGE_OT_product_from_photo(_BackendJob, bpy.types.Operator):
    """Make a product from the photo on the backend (cut-out, multi-view generation, splat fusion,
    mesh), then set it as the product to insert"""
    bl_idname = "splatstage.product_from_photo"
    bl_label = "Product from Photo"
    kind, label = "product", "Product from Photo"

    def prepare(self, context):
        from .core import delivery

        p = context.scene.splatstage_product_photo
        params = product_params(blend_path(p.photo_path) if p.photo_path else "", p.height, p.elevation,
                                p.box, p.preview)
        dest = product_dir(context.scene)

        def finish(scene, ev, staging):
            folder = delivery.deliver_folder(staging, dest)
            return use_product(scene, folder)

        return params, finish


def draw_product_photo(self, context) -> None:
    """Appended to the Product panel: the photo, its height and the button."""
    p = context.scene.splatstage_product_photo
    box = self.layout.box()
    box.label(text="Product from Photo", icon="IMAGE_DATA")
    box.prop(p, "photo_path")
    row = box.row(align=True)
    row.prop(p, "height")
    row.prop(p, "elevation")
    box.prop(p, "box")
    box.prop(p, "preview")
    box.prop(p, "output_dir")
    box.operator("splatstage.product_from_photo", icon="IMAGE_DATA")
    draw_job(box, STATE.job_of_kind("product"))
    if p.result:
        box.label(text=p.result[:80], icon="CHECKMARK")


classes = (SplatstageProductPhotoProps, SPLATSTAGE_OT_product_from_photo)


def register_props() -> None:
    bpy.types.Scene.splatstage_product_photo = PointerProperty(type=SplatstageProductPhotoProps)
    SPLATSTAGE_PT_product.append(draw_product_photo)


def unregister_props() -> None:
    SPLATSTAGE_PT_product.remove(draw_product_photo)
    del bpy.types.Scene.splatstage_product_photo
