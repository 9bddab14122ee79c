"""Undistort a still through Blender's compositor (Movie Distortion node) using the lens the
add-on writes onto the movie clip, and report where bright blobs end up.

usage: python undistort_clip.py OUT.json IMAGE.npy W H F CX CY K1 K2
IMAGE.npy: float grey image (H, W), top row first; saved as a 16-bit PNG for the clip.
"""
import json
import sys

import bpy
import numpy as np

from blender_addon.blender.camera_import import set_clip_lens


def compositor_tree(scene):
    """The scene's compositor tree: a node group in Blender 5.x, ``scene.node_tree`` before."""
    if "compositing_node_group" in bpy.types.Scene.bl_rna.properties:
        tree = bpy.data.node_groups.new("Undistort", "CompositorNodeTree")
        scene.compositing_node_group = tree
    else:
        scene.use_nodes = True
        tree = scene.node_tree
        for node in list(tree.nodes):
            tree.nodes.remove(node)
    scene.render.use_compositing = True
    return tree


def _output(tree, socket):
    if "compositing_node_group" in bpy.types.Scene.bl_rna.properties:
        tree.interface.new_socket(name="Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        out = tree.nodes.new("NodeGroupOutput")
    else:
        out = tree.nodes.new("CompositorNodeComposite")
    tree.links.new(socket, out.inputs["Image"])


out_path, image_path = sys.argv[1:3]
w, h = int(sys.argv[3]), int(sys.argv[4])
f, cx, cy, k1, k2 = map(float, sys.argv[5:10])

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = w, h, 100
scene.render.engine = "BLENDER_WORKBENCH"
scene.view_settings.view_transform = "Standard"
scene.render.image_settings.file_format = "OPEN_EXR"
scene.render.image_settings.color_depth = "32"
grey = np.load(image_path)
still = bpy.data.images.new("distorted", w, h, float_buffer=True)
rgba = np.ones((h, w, 4))
rgba[..., :3] = np.clip(grey, 0.0, 1.0)[::-1, :, None]
still.pixels[:] = rgba.ravel()
still.filepath_raw = out_path + ".png"
still.file_format = "PNG"
still.save()  # 8-bit sRGB PNG; blob centroids are insensitive to the tone curve
clip = bpy.data.movieclips.load(out_path + ".png")
set_clip_lens(clip, w, h, f, cx, cy, k1, k2)
tree = compositor_tree(scene)
src = tree.nodes.new("CompositorNodeMovieClip")
src.clip = clip
und = tree.nodes.new("CompositorNodeMovieDistortion")
und.clip = clip
if "Type" in und.inputs:
    und.inputs["Type"].default_value = "Undistort"
else:
    und.distortion_type = "UNDISTORT"
tree.links.new(src.outputs["Image"], und.inputs["Image"])
_output(tree, und.outputs["Image"])
scene.render.filepath = out_path + ".exr"
bpy.ops.render.render(write_still=True)
img = bpy.data.images.load(out_path + ".exr")
px = np.array(img.pixels[:], dtype=np.float64).reshape(h, w, 4)[::-1, :, 0]  # top row first
json.dump({"pixels": px.tolist()}, open(out_path, "w"))
