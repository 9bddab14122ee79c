"""World lighting from an equirectangular environment map (rendered from the splats at the
product's position by the backend), with exposure (EV stops) and rotation about world +Z.

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
