"""Compositor node tree: footage background + product render + depth occlusion.

Layers, per pixel::

    occluded = splat_depth < product_depth * (1 - margin)
    out      = alpha_over(background, product_rgba, factor = 1 - occluded)

``product_rgba`` is the Cycles render with a transparent film, so the shadow-catcher ground
contributes only its shadow (dark, partially transparent); ``product_depth`` is its Z pass
(ground plane included, so a shadow behind a scene object is hidden too). ``splat_depth`` is the
planar depth rendered from the splats for the same camera (a large value where there is
nothing). ``margin`` is relative: a splat surface must be that much nearer than the product to
hide it, which keeps reconstruction noise on the ground from eating into contact shadows.

Blender 5.x uses ``scene.compositing_node_group`` (a node group with an ``Image`` output and
shader-style Math nodes); 4.2-4.5 use ``scene.node_tree`` with Composite and compositor Math
nodes. :func:`build` handles both.
"""
from __future__ import annotations

import bpy

TREE_NAME = "Splatstage Composite"


def is_group_api() -> bool:
    """Whether this Blender composites through ``scene.compositing_node_group`` (5.x)."""
    return hasattr(bpy.types.Scene, "compositing_node_group") or \
        "compositing_node_group" in bpy.types.Scene.bl_rna.properties


def compositor_tree(scene, clear: bool = True):
    """The scene's compositor tree (created when missing), emptied when ``clear``."""
    if is_group_api():
        tree = scene.compositing_node_group
        if tree is None:
            tree = bpy.data.node_groups.new(TREE_NAME, "CompositorNodeTree")
            scene.compositing_node_group = tree
    else:
        scene.use_nodes = True
        tree = scene.node_tree
    scene.render.use_compositing = True
    if clear:
        for node in list(tree.nodes):
            tree.nodes.remove(node)
    return tree


def _math(tree, operation: str, a, b, label: str):
    node = tree.nodes.new("ShaderNodeMath" if is_group_api() else "CompositorNodeMath")
    node.operation = operation
    node.label = label
    for i, value in enumerate((a, b)):
        if isinstance(value, (int, float)):
            node.inputs[i].default_value = float(value)
        else:
            tree.links.new(value, node.inputs[i])
    return node.outputs[0]


def _output(tree, socket) -> None:
    if is_group_api():
        if not any(item.item_type == "SOCKET" and item.in_out == "OUTPUT" and item.name == "Image"
                   for item in tree.interface.items_tree):
            tree.interface.new_socket(name="Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        out = tree.nodes.new("NodeGroupOutput")
        tree.links.new(socket, out.inputs["Image"])
    else:
        out = tree.nodes.new("CompositorNodeComposite")
        out.use_alpha = False
        tree.links.new(socket, out.inputs["Image"])


def _alpha_over(tree, background, foreground, factor):
    node = tree.nodes.new("CompositorNodeAlphaOver")
    if "Background" in node.inputs:  # 5.x
        bg_in, fg_in, fac_in = node.inputs["Background"], node.inputs["Foreground"], node.inputs["Factor"]
    else:  # 4.x: Fac, Image (background), Image (foreground)
        bg_in, fg_in, fac_in = node.inputs[1], node.inputs[2], node.inputs[0]
        node.use_premultiply = False
    tree.links.new(background, bg_in)
    tree.links.new(foreground, fg_in)
    tree.links.new(factor, fac_in)
    return node.outputs["Image"]


def image_input(tree, image, label: str):
    node = tree.nodes.new("CompositorNodeImage")
    node.image = image
    node.label = label
    return node


def build(scene, background_image, depth_image, margin: float = 0.03) -> dict:
    """Build the tree in ``scene``; returns its nodes by role (``background``, ``depth``,
    ``render_layers``). ``background_image`` and ``depth_image`` are ``bpy.types.Image``
    (their files can be swapped per frame); the Z pass is switched on for the view layer."""
    scene.view_layers[0].use_pass_z = True
    tree = compositor_tree(scene)
    rl = tree.nodes.new("CompositorNodeRLayers")
    rl.scene = scene
    bg = image_input(tree, background_image, "Footage")
    dz = image_input(tree, depth_image, "Splat depth")
    threshold = _math(tree, "MULTIPLY", rl.outputs["Depth"], 1.0 - float(margin), "Product depth less margin")
    occluded = _math(tree, "LESS_THAN", dz.outputs["Image"], threshold, "Splat in front")
    visible = _math(tree, "SUBTRACT", 1.0, occluded, "Product visible")
    _output(tree, _alpha_over(tree, bg.outputs["Image"], rl.outputs["Image"], visible))
    return {"tree": tree, "background": bg, "depth": dz, "render_layers": rl}


def data_image(path: str, name: str, non_color: bool):
    """Load ``path`` as a new image datablock (``Non-Color`` for depth data)."""
    img = bpy.data.images.load(path, check_existing=False)
    img.name = name
    if non_color:
        img.colorspace_settings.name = "Non-Color"
    return img


def swap_file(image, path: str) -> None:
    """Point ``image`` at another file of the same kind (per-frame inputs)."""
    image.filepath = path
    image.reload()
