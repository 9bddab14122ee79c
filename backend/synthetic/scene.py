"""Builds the textured tabletop/room scene in Blender (imported only inside the render subprocess).

World: +Z up, metres, ground plane z = 0. Every object the scene creates is described by a dict
(name, kind, role, centre, size, bbox_min/bbox_max in world metres) so that tests can project
known 3D points. Objects with role ``marker`` are small emissive magenta spheres whose
``centre`` is exact; ``box_a`` is an axis-aligned box with exact corners; the optional
``occluder`` is a tall cylinder standing between the start camera and the look-at target.
"""
from __future__ import annotations

import math

import bpy
import numpy as np

MARKER_RADIUS = 0.05
MARKER_COLOUR = (1.0, 0.0, 1.0)
MARKERS = (  # exact marker centres (world metres)
    (0.0, 0.0, MARKER_RADIUS),
    (-0.75, 0.35, MARKER_RADIUS),
    (0.8, -0.3, MARKER_RADIUS),
    (-0.35, -0.55, MARKER_RADIUS),
    (0.45, 0.25, 0.30 + MARKER_RADIUS),  # resting on top of box_a
)
BOX_A = {"centre": (0.45, 0.25, 0.15), "size": (0.30, 0.30, 0.30)}
OCCLUDER = {"centre": (0.0, -0.9, 0.45), "radius": 0.12, "height": 0.9}


def _nodes(mat):
    mat.use_nodes = True
    nt = mat.node_tree
    for n in list(nt.nodes):
        if n.type != "OUTPUT_MATERIAL":
            nt.nodes.remove(n)
    return nt, nt.nodes["Material Output"]


def _mix(nt, a, b, blend: str, factor: float):
    """Colour Mix node ``blend(a, b)`` at ``factor``; ``a``/``b`` are sockets or RGB tuples."""
    node = nt.nodes.new("ShaderNodeMix")
    node.data_type, node.blend_type = "RGBA", blend
    node.inputs["Factor"].default_value = factor
    for slot, src in (("A", a), ("B", b)):
        if isinstance(src, tuple):
            node.inputs[slot].default_value = (*src, 1.0)
        else:
            nt.links.new(src, node.inputs[slot])
    return node.outputs["Result"]


def textured_material(name: str, tint, scale: float, seed: float, speckle_per_m: float,
                      roughness: float = 0.7):
    """Principled material with a non-repeating multi-scale albedo pattern.

    Layers (frequencies in features per metre of object space): fractal noise colour at
    ``2 * scale``, voronoi cells at ``6 * scale``, a faint checker at ``1.5 * scale`` and
    high-contrast speckles at ``speckle_per_m`` (chosen a few pixels wide at the render
    resolution, so corner detectors find features everywhere). ``seed`` offsets the pattern
    so no two surfaces share one.
    """
    mat = bpy.data.materials.new(name)
    nt, out = _nodes(mat)
    n = nt.nodes
    coord = n.new("ShaderNodeTexCoord")
    mapping = n.new("ShaderNodeMapping")
    mapping.inputs["Location"].default_value = (seed * 17.3, seed * 5.1, seed * 3.7)
    nt.links.new(coord.outputs["Object"], mapping.inputs["Vector"])
    noise = n.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 2.0 * scale
    noise.inputs["Detail"].default_value = 8.0
    noise.inputs["Roughness"].default_value = 0.65
    vor = n.new("ShaderNodeTexVoronoi")
    vor.inputs["Scale"].default_value = 6.0 * scale
    chk = n.new("ShaderNodeTexChecker")
    chk.inputs["Scale"].default_value = 1.5 * scale
    chk.inputs["Color1"].default_value = (1.0, 1.0, 1.0, 1.0)
    chk.inputs["Color2"].default_value = (0.7, 0.7, 0.7, 1.0)
    speck = n.new("ShaderNodeTexNoise")
    speck.inputs["Scale"].default_value = speckle_per_m
    speck.inputs["Detail"].default_value = 1.0
    ramp = n.new("ShaderNodeMapRange")
    ramp.inputs["From Min"].default_value, ramp.inputs["From Max"].default_value = 0.45, 0.55
    ramp.inputs["To Min"].default_value, ramp.inputs["To Max"].default_value = 0.35, 1.0
    nt.links.new(speck.outputs["Fac"], ramp.inputs["Value"])
    for tex in (noise, vor, chk, speck):
        nt.links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
    colour = _mix(nt, noise.outputs["Color"], noise.outputs["Fac"], "MIX", 0.55)
    colour = _mix(nt, colour, chk.outputs["Color"], "MULTIPLY", 1.0)
    colour = _mix(nt, colour, vor.outputs["Distance"], "OVERLAY", 0.6)
    colour = _mix(nt, colour, ramp.outputs["Result"], "MULTIPLY", 1.0)
    colour = _mix(nt, colour, tuple(tint), "MULTIPLY", 1.0)
    bsdf = n.new("ShaderNodeBsdfPrincipled")
    bsdf.inputs["Roughness"].default_value = roughness
    nt.links.new(colour, bsdf.inputs["Base Color"])
    nt.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    return mat


def emissive_material(name: str, colour, strength: float = 1.0):
    """Pure emission: renders as a flat saturated colour under the Standard view transform."""
    mat = bpy.data.materials.new(name)
    nt, out = _nodes(mat)
    em = nt.nodes.new("ShaderNodeEmission")
    em.inputs["Color"].default_value = (*colour, 1.0)
    em.inputs["Strength"].default_value = strength
    nt.links.new(em.outputs["Emission"], out.inputs["Surface"])
    return mat


def _camera_only(obj) -> None:
    """Seen by camera rays only: casts no shadow and lights nothing, so its image is exact."""
    for ray in ("diffuse", "glossy", "transmission", "volume_scatter", "shadow"):
        setattr(obj, f"visible_{ray}", False)


def _finish(obj, mat, kind, role, centre, size, bbox_min, bbox_max, records):
    obj.data.materials.append(mat)
    records.append({"name": obj.name, "kind": kind, "role": role,
                    "centre": [float(c) for c in centre], "size": [float(c) for c in size],
                    "bbox_min": [float(c) for c in bbox_min], "bbox_max": [float(c) for c in bbox_max]})
    return obj


def add_box(name, centre, size, mat, records, role="object", yaw_deg=0.0):
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=centre, rotation=(0, 0, math.radians(yaw_deg)))
    obj = bpy.context.active_object
    obj.name = name
    obj.scale = size
    half = np.abs(np.array([[math.cos(math.radians(yaw_deg)), -math.sin(math.radians(yaw_deg))],
                            [math.sin(math.radians(yaw_deg)), math.cos(math.radians(yaw_deg))]])) @ (np.array(size[:2]) / 2)
    ext = np.array([half[0], half[1], size[2] / 2])
    rec = _finish(obj, mat, "box", role, centre, size, np.array(centre) - ext, np.array(centre) + ext, records)
    records[-1]["yaw_deg"] = float(yaw_deg)
    return rec


def add_cylinder(name, centre, radius, height, mat, records, role="object"):
    bpy.ops.mesh.primitive_cylinder_add(vertices=48, radius=radius, depth=height, location=centre)
    obj = bpy.context.active_object
    obj.name = name
    ext = np.array([radius, radius, height / 2])
    return _finish(obj, mat, "cylinder", role, centre, (2 * radius, 2 * radius, height),
                   np.array(centre) - ext, np.array(centre) + ext, records)


def add_sphere(name, centre, radius, mat, records, role="object", segments=48):
    bpy.ops.mesh.primitive_uv_sphere_add(segments=segments, ring_count=segments // 2, radius=radius,
                                         location=centre)
    obj = bpy.context.active_object
    obj.name = name
    bpy.ops.object.shade_smooth()
    return _finish(obj, mat, "sphere", role, centre, (2 * radius,) * 3,
                   np.array(centre) - radius, np.array(centre) + radius, records)


def build_scene(seed: int, occluder: bool = False, pixel_m: float = 0.01, room_half: float = 4.0,
                wall_height: float = 2.5) -> list[dict]:
    """Create ground, walls, objects, markers and lights; return the object records.

    ``pixel_m`` is the footprint of one pixel at the look-at target (distance / focal_px): the
    finest texture layer is made about five pixels wide there (and on the walls, which are
    about twice as far).
    """
    speckle = 1.0 / (5.0 * pixel_m)
    rng = np.random.default_rng(seed)
    records: list[dict] = []
    bpy.ops.mesh.primitive_plane_add(size=2 * room_half, location=(0, 0, 0))
    ground = bpy.context.active_object
    ground.name = "ground"
    _finish(ground, textured_material("ground_mat", (0.85, 0.8, 0.7), 4.0, rng.uniform(0, 10), speckle),
            "plane", "ground", (0, 0, 0), (2 * room_half, 2 * room_half, 0),
            (-room_half, -room_half, 0), (room_half, room_half, 0), records)
    wall_specs = [((0, room_half, wall_height / 2), (2 * room_half, 0.1, wall_height)),
                  ((0, -room_half, wall_height / 2), (2 * room_half, 0.1, wall_height)),
                  ((room_half, 0, wall_height / 2), (0.1, 2 * room_half, wall_height)),
                  ((-room_half, 0, wall_height / 2), (0.1, 2 * room_half, wall_height))]
    for i, (c, sz) in enumerate(wall_specs):
        tint = tuple(rng.uniform(0.45, 0.7, 3))
        add_box(f"wall_{i}", c, sz, textured_material(f"wall_mat_{i}", tint, 2.0, rng.uniform(0, 10), speckle / 2),
                records, role="wall")
    add_box("box_a", BOX_A["centre"], BOX_A["size"],
            textured_material("box_a_mat", (0.9, 0.55, 0.3), 12.0, rng.uniform(0, 10), speckle), records)
    marker_mat = emissive_material("marker_mat", MARKER_COLOUR)
    for i, c in enumerate(MARKERS):
        add_sphere(f"marker_{i}", c, MARKER_RADIUS, marker_mat, records, role="marker", segments=64)
        _camera_only(bpy.context.active_object)
    if occluder:
        c = OCCLUDER
        add_cylinder("occluder", c["centre"], c["radius"], c["height"],
                     textured_material("occluder_mat", (0.3, 0.6, 0.9), 15.0, rng.uniform(0, 10), speckle),
                     records, role="occluder")
    _scatter_objects(rng, records, speckle)
    _add_lights(rng)
    return records


def _scatter_objects(rng: np.random.Generator, records: list[dict], speckle: float, count: int = 7) -> None:
    """Place seeded boxes, cylinders and spheres on the ground, clear of markers and box_a."""
    keep_clear = [np.array(c[:2]) for c in MARKERS] + [np.array(BOX_A["centre"][:2]),
                                                       np.array(OCCLUDER["centre"][:2])]
    placed = 0
    for attempt in range(200):
        if placed == count:
            break
        r, a = rng.uniform(0.6, 2.2), rng.uniform(0, 2 * np.pi)
        xy = np.array([r * np.cos(a), r * np.sin(a) + 0.3])
        size = rng.uniform(0.12, 0.35)
        if any(np.linalg.norm(xy - k) < size + 0.2 for k in keep_clear):
            continue
        keep_clear.append(xy)
        tint = tuple(np.clip(rng.uniform(0.2, 0.95, 3), 0, 1))
        mat = textured_material(f"obj_mat_{placed}", tint, rng.uniform(8, 20), rng.uniform(0, 10), speckle)
        kind = ("box", "cylinder", "sphere")[placed % 3]
        name = f"{kind}_{placed}"
        if kind == "box":
            h = rng.uniform(0.15, 0.5)
            add_box(name, (xy[0], xy[1], h / 2), (size, size * rng.uniform(0.7, 1.3), h), mat, records,
                    yaw_deg=rng.uniform(0, 90))
        elif kind == "cylinder":
            h = rng.uniform(0.2, 0.6)
            add_cylinder(name, (xy[0], xy[1], h / 2), size / 2, h, mat, records)
        else:
            add_sphere(name, (xy[0], xy[1], size / 2), size / 2, mat, records)
        placed += 1


def _add_lights(rng: np.random.Generator) -> None:
    sun_data = bpy.data.lights.new("sun", type="SUN")
    sun_data.energy = 3.5
    sun_data.angle = math.radians(1.0)
    sun = bpy.data.objects.new("sun", sun_data)
    bpy.context.scene.collection.objects.link(sun)
    # Azimuth within 60 deg of +Y: the light falls on the far (+Y) wall the cameras face.
    sun.rotation_euler = (math.radians(40), 0.0, rng.uniform(-np.pi / 3, np.pi / 3))
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = (0.55, 0.6, 0.7, 1.0)
    bg.inputs["Strength"].default_value = 0.6
    bpy.context.scene.world = world


def import_gltf(path: str):
    """Import a glTF file with Blender's importer: ``(new objects, their mesh vertices in world
    space (N, 3))``; ValueError when the import fails or the file holds no mesh."""
    before = set(bpy.data.objects)
    if bpy.ops.import_scene.gltf(filepath=path) != {"FINISHED"}:
        raise ValueError(f"--product {path}: the glTF import failed")
    new = [o for o in bpy.data.objects if o not in before]
    bpy.context.view_layer.update()
    deps = bpy.context.evaluated_depsgraph_get()
    pts = []
    for obj in new:
        if obj.type != "MESH":
            continue
        ev = obj.evaluated_get(deps)
        mw = np.array(ev.matrix_world)
        co = np.array([v.co for v in ev.data.vertices], float)
        pts.append(co @ mw[:3, :3].T + mw[:3, 3])
    if not pts:
        raise ValueError(f"--product {path}: no mesh in the file")
    return new, np.concatenate(pts)


def parent_under_empty(objects, matrix: np.ndarray, name: str = "product"):
    """Parent the root objects among ``objects`` to a new empty with world matrix ``matrix`` (4x4)."""
    from mathutils import Matrix

    root = bpy.data.objects.new(name, None)
    bpy.context.scene.collection.objects.link(root)
    root.matrix_world = Matrix(np.asarray(matrix).tolist())
    for obj in objects:
        if obj.parent is None:
            obj.parent = root
    bpy.context.view_layer.update()
    return root


def add_product(path: str, at_xy, height: float | None, rotate_deg: float, records: list[dict]):
    """Stand a glTF product on the ground through Blender's glTF importer: its bounding box's
    footprint centre at ``at_xy``, its lowest point on z = 0, turned ``rotate_deg`` about +Z and
    scaled to ``height`` metres tall (its own size when None). Recorded with role ``product``
    (its world bounding box after the turn)."""
    new, pts = import_gltf(path)
    lo, hi = pts.min(0), pts.max(0)
    s = float(height) / (hi[2] - lo[2]) if height else 1.0
    a = math.radians(rotate_deg)
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = s * rot
    foot = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    m[:3, 3] = np.array([at_xy[0], at_xy[1], 0.0]) - s * rot @ foot
    root = parent_under_empty(new, m)
    world = pts @ m[:3, :3].T + m[:3, 3]
    wlo, whi = world.min(0), world.max(0)
    records.append({"name": "product", "kind": "product", "role": "product", "file": str(path),
                    "centre": [float(c) for c in (wlo + whi) / 2], "size": [float(c) for c in whi - wlo],
                    "bbox_min": [float(c) for c in wlo], "bbox_max": [float(c) for c in whi]})
    return root
