"""Insert a GLB product with Blender's own glTF importer, atomically.

The file is validated first (``shared_protocol.glb_check``); the import runs inside
:func:`.atomic.atomic`, so any failure removes everything the import created and restores
selection, active object and the scene settings the importer may touch: the file is exactly
as it was. On success all imported objects hang under one empty, scaled to
a real-world size and standing on the ground plane at the 3D cursor.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ..core import placement
from ..vendor import module
from .atomic import atomic

glb_check = module("glb_check")


class ProductError(RuntimeError):
    """The product could not be inserted; the scene is unchanged."""


def supported_extensions() -> list[str]:
    """glTF extensions the installed Blender importer can decode (Draco only with its library)."""
    managed: list[str] = []
    try:
        from io_scene_gltf2.io.imp.gltf2_io_gltf import glTFImporter

        managed = list(glTFImporter("", {"import_user_extensions": []}).extensions_managed)
    except Exception:  # noqa: BLE001 - fall back to the extensions every supported version has
        managed = ["KHR_materials_pbrSpecularGlossiness", "KHR_lights_punctual", "KHR_materials_unlit",
                   "KHR_texture_transform", "KHR_materials_clearcoat", "KHR_mesh_quantization",
                   "EXT_mesh_gpu_instancing", "KHR_draco_mesh_compression", "KHR_materials_variants",
                   "KHR_materials_emissive_strength", "KHR_materials_transmission",
                   "KHR_materials_specular", "KHR_materials_sheen", "KHR_materials_ior",
                   "KHR_materials_volume"]
    if "KHR_draco_mesh_compression" in managed and not draco_available():
        managed.remove("KHR_draco_mesh_compression")
    return managed


def draco_available() -> bool:
    """Whether the glTF add-on's Draco decoder library is present."""
    try:
        from io_scene_gltf2.io.com import draco

        return bool(draco.dll_exists(quiet=True))
    except Exception:  # noqa: BLE001
        return False


def _evaluated_bounds(objs) -> tuple[np.ndarray, np.ndarray]:
    """World-space bounds of the evaluated geometry (armature poses and modifiers applied)."""
    deps = bpy.context.evaluated_depsgraph_get()
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for obj in objs:
        if obj.type not in {"MESH", "CURVE", "SURFACE", "FONT"}:
            continue
        ev = obj.evaluated_get(deps)
        mesh = ev.to_mesh()
        try:
            n = len(mesh.vertices)
            if not n:
                continue
            co = np.empty(n * 3, dtype=np.float32)
            mesh.vertices.foreach_get("co", co)
            co = co.reshape(-1, 3).astype(np.float64)
            mw = np.array(ev.matrix_world)
            w = co @ mw[:3, :3].T + mw[:3, 3]
            if not np.all(np.isfinite(w)):
                raise ProductError(f"{obj.name}: non-finite vertex positions after import")
            lo, hi = np.minimum(lo, w.min(0)), np.maximum(hi, w.max(0))
        finally:
            ev.to_mesh_clear()
    if not np.all(np.isfinite(lo)):
        raise ProductError("the file contains no mesh geometry")
    return lo, hi


def _importer_helper(obj) -> bool:
    """Objects the glTF importer keeps out of the scene (e.g. bone shapes in 'glTF_not_exported')."""
    return bool(obj.users_collection) and all(c.name.startswith("glTF_not_exported") for c in obj.users_collection)


def ground_of(scene) -> tuple[np.ndarray, np.ndarray]:
    """(point, normal) of the scene's Splatstage ground plane, else the world XY plane."""
    for obj in scene.objects:
        if obj.get("splatstage_ground"):
            mw = np.array(obj.matrix_world)
            n = mw[:3, :3] @ np.array([0.0, 0.0, 1.0])
            return mw[:3, 3].copy(), n / np.linalg.norm(n)
    return np.zeros(3), np.array([0.0, 0.0, 1.0])


def insert_product(context, filepath: str | Path, *, dimension: float | None, axis: str = "LARGEST",
                   rotation_z: float = 0.0, location=None, name: str | None = None):
    """Import ``filepath`` and return the product empty; raise :class:`ProductError`
    (scene unchanged) on any failure. ``dimension``: the real size in metres along ``axis``,
    None for the model's own size (glTF units are metres). ``location`` defaults to the 3D
    cursor. The empty records the size it got: ``splatstage_dimension_m`` (along ``axis``) and
    ``splatstage_height_m`` (along the ground normal, what the composite's product height is)."""
    path = Path(filepath)
    scene = context.scene
    if dimension is not None and not (dimension > 0 and np.isfinite(dimension)):
        raise ProductError(f"real-world size must be a positive number of metres, got {dimension}")
    if axis not in placement.AXES:
        raise ProductError(f"axis must be one of {', '.join(placement.AXES)}")
    try:
        info = glb_check.inspect(path, supported_extensions())
    except glb_check.GlbError as exc:
        raise ProductError(str(exc)) from None
    if not hasattr(bpy.ops.import_scene, "gltf"):
        raise ProductError("Blender's glTF importer (io_scene_gltf2) is not enabled")

    if context.view_layer.objects.active is not None and context.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    cursor = np.array(scene.cursor.location if location is None else location, dtype=np.float64)
    with atomic(context) as before:
        for o in context.view_layer.objects:
            o.select_set(False)
        try:
            result = bpy.ops.import_scene.gltf(filepath=str(path))
        except RuntimeError as exc:
            msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else "import failed"
            raise ProductError(f"{path}: glTF import failed ({msg})") from None
        if result != {"FINISHED"}:
            raise ProductError(f"{path}: glTF import was cancelled")
        new_objs = [o for o in bpy.data.objects if o.session_uid not in before["objects"]
                    and not _importer_helper(o)]
        if not new_objs:
            raise ProductError(f"{path}: the file contains no objects")
        lo, hi = _evaluated_bounds(new_objs)
        try:
            scale = 1.0 if dimension is None else placement.scale_for_dimension(lo, hi, dimension, axis)
        except ValueError as exc:
            raise ProductError(f"{path}: {exc}") from None
        root = bpy.data.objects.new(name or f"Product {path.stem}", None)
        root.empty_display_type = "CUBE"
        root.empty_display_size = 0.5 * float(np.max(hi - lo)) or 1.0
        coll = new_objs[0].users_collection[0] if new_objs[0].users_collection else scene.collection
        coll.objects.link(root)
        base = Matrix.Translation((-(lo[0] + hi[0]) / 2.0, -(lo[1] + hi[1]) / 2.0, -lo[2]))
        for o in new_objs:
            if o.parent is None:
                mw = o.matrix_world.copy()
                o.parent = root
                o.matrix_parent_inverse = base @ mw @ o.matrix_basis.inverted()
        g_point, g_normal = ground_of(scene)
        root.matrix_world = Matrix(placement.product_matrix(g_point, g_normal, cursor, rotation_z, scale).tolist())
        root["splatstage_product"] = str(path)
        ext = hi - lo
        own = float(ext.max()) if axis == "LARGEST" else float(ext[{"WIDTH": 0, "DEPTH": 1, "HEIGHT": 2}[axis]])
        root["splatstage_dimension_m"] = float(dimension) if dimension is not None else own
        root["splatstage_height_m"] = float(scale * ext[2])
        if info.warnings:
            root["splatstage_warnings"] = "; ".join(info.warnings)
        for o in context.view_layer.objects:
            o.select_set(False)
        root.select_set(True)
        context.view_layer.objects.active = root
        context.view_layer.update()
    return root
