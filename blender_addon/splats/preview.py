"""Geometry-nodes + material preview of a splat object (imports bpy; Blender 4.2 to 5.x).

Each displayed splat becomes an instance of a small ico sphere, rotated by the ``rotation``
attribute and scaled by ``scale`` times the "Splat Size" input (in standard deviations), so it
shows the Gaussian's ellipsoid. A random subset of ``Display Fraction`` of the splats is drawn
(a seeded Bernoulli selection, so the drawn share is the fraction up to sampling noise). The
material emits the ``color`` attribute (the splat's own radiance, independent of scene lights)
and is transparent by ``1 - opacity``; it reads both through the Attribute node's instancer
lookup, which EEVEE and Cycles support for geometry-nodes instances. The preview casts no
shadows. No ``gpu``-module drawing is involved, so it renders under ``blender -b``.
"""
from __future__ import annotations

import bpy

TREE_NAME = "Splatstage Splat Preview"
MATERIAL_NAME = "Splatstage Splat"
MODIFIER_NAME = "Splat Preview"
INPUTS = {"Display Fraction": ("NodeSocketFloat", 1.0, 0.0, 1.0),
          "Splat Size": ("NodeSocketFloat", 2.0, 0.01, 10.0),
          "Seed": ("NodeSocketInt", 0, 0, 1 << 30)}


def _socket(sockets, name: str | tuple[str, ...], kind: str | None = None):
    """The available socket called ``name`` (or any of several names that different Blender
    versions use), and of type ``kind`` if given."""
    names = (name,) if isinstance(name, str) else name
    for s in sockets:
        if s.name in names and (kind is None or s.type == kind) and getattr(s, "enabled", True) \
                and not getattr(s, "is_unavailable", False):
            return s
    raise KeyError(f"no available socket {name!r} ({kind}) on {sockets.data.bl_idname}")


def material() -> bpy.types.Material:
    """The emission/transparency preview material (created once per file)."""
    mat = bpy.data.materials.get(MATERIAL_NAME)
    if mat is not None:
        return mat
    mat = bpy.data.materials.new(MATERIAL_NAME)
    mat.use_nodes = True
    nt = mat.node_tree
    nt.nodes.clear()
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    col = nt.nodes.new("ShaderNodeAttribute")
    col.attribute_type, col.attribute_name = "INSTANCER", "color"
    alpha = nt.nodes.new("ShaderNodeAttribute")
    alpha.attribute_type, alpha.attribute_name = "INSTANCER", "opacity"
    emit = nt.nodes.new("ShaderNodeEmission")
    emit.inputs["Strength"].default_value = 1.0
    clear = nt.nodes.new("ShaderNodeBsdfTransparent")
    mix = nt.nodes.new("ShaderNodeMixShader")
    nt.links.new(_socket(col.outputs, "Color"), emit.inputs["Color"])
    nt.links.new(_socket(alpha.outputs, ("Fac", "Factor")), mix.inputs[0])
    nt.links.new(clear.outputs[0], mix.inputs[1])
    nt.links.new(emit.outputs[0], mix.inputs[2])
    nt.links.new(mix.outputs[0], out.inputs["Surface"])
    for x, node in enumerate((col, emit, mix, out)):
        node.location = (300 * x, 0)
    alpha.location, clear.location = (0, 250), (300, 250)
    if hasattr(mat, "surface_render_method"):          # EEVEE Next (4.2+)
        mat.surface_render_method = "DITHERED"
    else:
        mat.blend_method = "HASHED"
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    return mat


def node_tree() -> bpy.types.NodeTree:
    """The preview geometry-nodes group (created once per file)."""
    tree = bpy.data.node_groups.get(TREE_NAME)
    if tree is not None:
        return tree
    tree = bpy.data.node_groups.new(TREE_NAME, "GeometryNodeTree")
    iface = tree.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    for name, (kind, default, lo, hi) in INPUTS.items():
        s = iface.new_socket(name, in_out="INPUT", socket_type=kind)
        s.default_value, s.min_value, s.max_value = default, lo, hi
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    n = tree.nodes
    gin, gout = n.new("NodeGroupInput"), n.new("NodeGroupOutput")
    pick = n.new("FunctionNodeRandomValue")
    pick.data_type = "BOOLEAN"
    ico = n.new("GeometryNodeMeshIcoSphere")
    ico.inputs["Radius"].default_value = 1.0
    ico.inputs["Subdivisions"].default_value = 1
    setmat = n.new("GeometryNodeSetMaterial")
    setmat.inputs["Material"].default_value = material()
    rot = n.new("GeometryNodeInputNamedAttribute")
    rot.data_type = "QUATERNION"
    rot.inputs["Name"].default_value = "rotation"
    scl = n.new("GeometryNodeInputNamedAttribute")
    scl.data_type = "FLOAT_VECTOR"
    scl.inputs["Name"].default_value = "scale"
    size = n.new("ShaderNodeVectorMath")
    size.operation = "SCALE"
    inst = n.new("GeometryNodeInstanceOnPoints")
    L = tree.links.new
    L(_socket(gin.outputs, "Display Fraction"), _socket(pick.inputs, "Probability"))
    L(_socket(gin.outputs, "Seed"), _socket(pick.inputs, "Seed"))
    L(_socket(gin.outputs, "Geometry"), inst.inputs["Points"])
    L(_socket(pick.outputs, "Value", "BOOLEAN"), inst.inputs["Selection"])
    L(ico.outputs["Mesh"], setmat.inputs["Geometry"])
    L(setmat.outputs["Geometry"], inst.inputs["Instance"])
    L(_socket(rot.outputs, "Attribute", "ROTATION"), inst.inputs["Rotation"])
    L(_socket(scl.outputs, "Attribute", "VECTOR"), _socket(size.inputs, "Vector"))
    L(_socket(gin.outputs, "Splat Size"), _socket(size.inputs, "Scale"))
    L(_socket(size.outputs, "Vector"), inst.inputs["Scale"])
    L(inst.outputs["Instances"], _socket(gout.inputs, "Geometry"))
    layout = {gin: (0, 0), pick: (250, 200), ico: (250, -150), setmat: (450, -150), rot: (450, -350),
              scl: (250, -500), size: (450, -500), inst: (700, 0), gout: (950, 0)}
    for node, loc in layout.items():
        node.location = loc
    return tree


def _input_id(tree, name: str) -> str:
    for item in tree.interface.items_tree:
        if getattr(item, "in_out", None) == "INPUT" and item.name == name:
            return item.identifier
    raise KeyError(name)


def add_preview(obj, display_fraction: float = 1.0, splat_size: float = 2.0, seed: int = 0):
    """Add (or update) the preview modifier on a splat object; returns the modifier."""
    mod = obj.modifiers.get(MODIFIER_NAME) or obj.modifiers.new(MODIFIER_NAME, "NODES")
    mod.node_group = node_tree()
    set_inputs(obj, display_fraction=display_fraction, splat_size=splat_size, seed=seed)
    if hasattr(obj, "visible_shadow"):
        obj.visible_shadow = False
    return mod


def set_inputs(obj, display_fraction: float | None = None, splat_size: float | None = None,
               seed: int | None = None) -> None:
    """Change the preview's display fraction (0..1), splat size (standard deviations) or seed."""
    mod = obj.modifiers[MODIFIER_NAME]
    tree = mod.node_group
    if display_fraction is not None:
        if not 0.0 <= display_fraction <= 1.0:
            raise ValueError(f"display fraction must be in [0, 1], got {display_fraction}")
        mod[_input_id(tree, "Display Fraction")] = float(display_fraction)
    if splat_size is not None:
        if splat_size <= 0:
            raise ValueError(f"splat size must be positive, got {splat_size}")
        mod[_input_id(tree, "Splat Size")] = float(splat_size)
    if seed is not None:
        mod[_input_id(tree, "Seed")] = int(seed)
    obj.update_tag()
