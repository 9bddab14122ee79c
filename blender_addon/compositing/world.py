"""World lighting from an equirectangular environment map (rendered from the splats at the
product's position by the backend), with exposure (EV stops) and rotation about world +Z; the
key light (a sun lamp found by the backend from the footage's shadows) follows both; the
shadow-catcher ground's albedo (the light it bounces onto the product).

Blender's equirectangular convention: the image centre column faces world +X, +Y is a
quarter turn to the left of it (u = 0.5 - atan2(y, x) / 2 pi) and the top row is world +Z.
"""
from __future__ import annotations

import math

import bpy

WORLD_NAME = "Splatstage Environment"


def setup(scene, image_path: str, exposure: float = 0.0, rotation_deg: float = 0.0):
    """Make ``scene.world`` an environment-texture world lit by ``image_path``; returns it.
    ``exposure`` scales the light by 2**exposure; ``rotation_deg`` turns the map about +Z."""
    world = bpy.data.worlds.get(WORLD_NAME) or bpy.data.worlds.new(WORLD_NAME)
    world.use_nodes = True
    nt = world.node_tree
    for node in list(nt.nodes):
        nt.nodes.remove(node)
    coord = nt.nodes.new("ShaderNodeTexCoord")
    mapping = nt.nodes.new("ShaderNodeMapping")
    env = nt.nodes.new("ShaderNodeTexEnvironment")
    env.image = bpy.data.images.load(str(image_path), check_existing=True)
    env.interpolation = "Linear"
    bg = nt.nodes.new("ShaderNodeBackground")
    out = nt.nodes.new("ShaderNodeOutputWorld")
    nt.links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
    nt.links.new(mapping.outputs["Vector"], env.inputs["Vector"])
    nt.links.new(env.outputs["Color"], bg.inputs["Color"])
    nt.links.new(bg.outputs["Background"], out.inputs["Surface"])
    scene.world = world
    set_controls(world, exposure, rotation_deg)
    return world


def set_controls(world, exposure: float, rotation_deg: float) -> None:
    """Exposure (EV) and rotation of an environment world made by :func:`setup`: the map turns
    by ``rotation_deg`` about world +Z (counter-clockwise seen from above: at 90 degrees what
    lay towards +X lights from +Y)."""
    nt = world.node_tree
    bg = next(n for n in nt.nodes if n.type == "BACKGROUND")
    mapping = next(n for n in nt.nodes if n.type == "MAPPING")
    bg.inputs["Strength"].default_value = 2.0 ** float(exposure)
    # the lookup vector turns by -angle, so the map's content turns by +angle
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, -math.radians(float(rotation_deg)))
    world["splatstage_exposure"] = float(exposure)
    world["splatstage_rotation_deg"] = float(rotation_deg)
    sun = bpy.data.objects.get(SUN_NAME)
    if sun is not None and "splatstage_direction" in sun:
        _place_sun(sun, exposure, rotation_deg)


def setup_uniform(scene, colour=(0.6, 0.6, 0.6), strength: float = 1.0):
    """A plain uniform world (when no environment map is available)."""
    world = bpy.data.worlds.get(WORLD_NAME) or bpy.data.worlds.new(WORLD_NAME)
    world.use_nodes = True
    nt = world.node_tree
    for node in list(nt.nodes):
        nt.nodes.remove(node)
    bg = nt.nodes.new("ShaderNodeBackground")
    out = nt.nodes.new("ShaderNodeOutputWorld")
    bg.inputs["Color"].default_value = (*colour, 1.0)
    bg.inputs["Strength"].default_value = strength
    nt.links.new(bg.outputs["Background"], out.inputs["Surface"])
    scene.world = world
    return world


SUN_NAME = "Splatstage Sun"


def add_sun(scene, direction, strength: float, angle_deg: float = 1.0, name: str = SUN_NAME):
    """A sun lamp shining from ``direction`` (world, from the scene towards the light) with
    ``strength`` W/m^2 (the irradiance of a surface facing it) and an angular diameter of
    ``angle_deg`` (soft shadow edges grow with it); returns the lamp object. The lamp follows
    the environment world's exposure and rotation (:func:`set_controls`), so the shadow it
    casts keeps its ratio to the map's ambient light."""
    d = [float(v) for v in direction]
    if math.sqrt(sum(v * v for v in d)) < 1e-9 or not math.isfinite(float(strength)) or strength < 0:
        raise ValueError(f"sun needs a direction and a strength >= 0, got {tuple(direction)!r}, {strength!r}")
    data = bpy.data.lights.get(name) or bpy.data.lights.new(name, type="SUN")
    data.angle = math.radians(float(angle_deg))
    obj = bpy.data.objects.get(name) or bpy.data.objects.new(name, data)
    if obj.name not in scene.collection.objects:
        scene.collection.objects.link(obj)
    obj["splatstage_direction"] = d
    obj["splatstage_strength"] = float(strength)
    world = scene.world
    ev = float(world.get("splatstage_exposure", 0.0)) if world is not None else 0.0
    rot = float(world.get("splatstage_rotation_deg", 0.0)) if world is not None else 0.0
    _place_sun(obj, ev, rot)
    return obj


def _place_sun(obj, exposure: float, rotation_deg: float) -> None:
    from mathutils import Vector

    x, y, z = obj["splatstage_direction"]
    a = math.radians(rotation_deg)
    d = Vector((x * math.cos(a) - y * math.sin(a), x * math.sin(a) + y * math.cos(a), z)).normalized()
    obj.data.energy = float(obj["splatstage_strength"]) * 2.0 ** float(exposure)
    obj.rotation_mode = "QUATERNION"  # a sun lamp shines along its local -Z
    obj.rotation_quaternion = Vector((0.0, 0.0, 1.0)).rotation_difference(d)


def ground_material(obj, albedo, name: str = "Splatstage Ground"):
    """Give the shadow-catcher ground a rough diffuse material of ``albedo`` (linear RGB): the
    light it bounces onto the product then matches the footage's ground (without one Cycles
    uses its default 0.8 grey)."""
    mat = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    mat.use_nodes = True
    nt = mat.node_tree
    for node in list(nt.nodes):
        nt.nodes.remove(node)
    bsdf = nt.nodes.new("ShaderNodeBsdfDiffuse")
    bsdf.inputs["Color"].default_value = (*(float(a) for a in albedo), 1.0)
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    obj.data.materials.clear()
    obj.data.materials.append(mat)
    return mat
