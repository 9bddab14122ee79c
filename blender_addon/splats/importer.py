"""Create the splat object in Blender (imports bpy).

The splats become the vertices of a mesh with no edges or faces (loadable and renderable on
Blender 4.2 to 5.x) carrying the point attributes listed in :mod:`.attributes`, every array
written with one ``foreach_set`` call (no per-point Python). The object has an identity
transform: positions are already in the world of the solved cameras (cameras.json). A
geometry-nodes modifier (:mod:`.preview`) draws it in EEVEE and Cycles.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from . import attributes as attrs_mod
from .attributes import SplatAttributes
from .preview import add_preview

# attribute data type -> (foreach_set property, components)
_PROPS = {"FLOAT": ("value", 1), "FLOAT_VECTOR": ("vector", 3), "FLOAT_COLOR": ("color", 4),
          "QUATERNION": ("value", 4)}


def _set_attribute(mesh, name: str, data_type: str, values: np.ndarray) -> None:
    existing = mesh.attributes.get(name)
    if existing is not None:
        mesh.attributes.remove(existing)
    attr = mesh.attributes.new(name, data_type, "POINT")
    prop, comps = _PROPS[data_type]
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if flat.size != len(mesh.vertices) * comps:
        raise ValueError(f"attribute {name}: expected {len(mesh.vertices)} x {comps} values, got {flat.size}")
    attr.data.foreach_set(prop, flat)


def build_mesh(splats: SplatAttributes, name: str = "Splats"):
    """A mesh whose vertices are the splat centres, with every splat attribute."""
    mesh = bpy.data.meshes.new(name)
    n = len(splats)
    mesh.vertices.add(n)
    # the generic "position" attribute takes the fast buffer path; vertices.foreach_set("co") does not
    mesh.attributes["position"].data.foreach_set(
        "vector", np.ascontiguousarray(splats.positions, dtype=np.float32).reshape(-1))
    _set_attribute(mesh, "color", "FLOAT_COLOR", splats.color)
    _set_attribute(mesh, "opacity", "FLOAT", splats.opacity)
    _set_attribute(mesh, "scale", "FLOAT_VECTOR", splats.scale)
    _set_attribute(mesh, "rotation", "QUATERNION", splats.rotation)
    for k in range(splats.sh.shape[1]):
        _set_attribute(mesh, f"sh_{k}", "FLOAT_VECTOR", splats.sh[:, k])
    mesh.update()
    return mesh


def create_splat_object(splats: SplatAttributes, name: str = "Splats", collection=None,
                        display_fraction: float | None = None, splat_size: float = 2.0,
                        preview: bool = True, source: str = ""):
    """Create and link the splat object; returns it.

    ``display_fraction`` is the share of splats the preview draws (default: all up to 200,000,
    then 200,000 of them); ``splat_size`` scales each preview ellipsoid in standard deviations.
    """
    if len(splats) == 0:
        raise ValueError(f"{source or name}: no splats to import")
    collection = collection or bpy.context.scene.collection
    mesh = build_mesh(splats, name)
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    obj.matrix_world.identity()
    obj["splatstage_splats"] = {"count": len(splats), "sh_degree": splats.sh_degree, "source": str(source)}
    if preview:
        fraction = attrs_mod.default_display_fraction(len(splats)) if display_fraction is None else display_fraction
        add_preview(obj, display_fraction=fraction, splat_size=splat_size)
    return obj


def import_ply(filepath: str | Path, name: str | None = None, **kw):
    """Read a 3DGS ``splats.ply`` (numpy reader) and create its splat object."""
    filepath = Path(filepath)
    return create_splat_object(attrs_mod.load(filepath), name or filepath.stem, source=str(filepath), **kw)


def import_payload(arrays: dict, name: str = "Splats", **kw):
    """Create the splat object from the backend's reconstruction arrays (``splat_payload``)."""
    return create_splat_object(attrs_mod.from_payload(arrays), name, source="backend", **kw)
