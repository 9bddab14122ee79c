"""Compositing in Blender (bpy side): the compositor node tree that layers footage, the
product render with its shadow-catcher alpha and depth occlusion by the splat layer
(:mod:`.tree`); the world lit by an equirectangular environment map rendered from the splats
(:mod:`.world`); the per-frame, resumable shot renderer (:mod:`.shot`); and the right eye of a
stereo composite through Blender's stereo 3D camera rig (:mod:`.stereo`).

Everything works under ``blender -b`` and bpy as a module (no ``gpu`` drawing), on Blender
4.2-4.5 (``scene.node_tree``) and 5.x (``scene.compositing_node_group``).
"""
