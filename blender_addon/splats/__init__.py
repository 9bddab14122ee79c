"""Gaussian splats in Blender.

``ply`` (numpy reader of 3DGS PLY files) and ``attributes`` (activation into Blender-ready
point attributes) are bpy-free; ``importer`` (the splat object) and ``preview`` (geometry
nodes + material) import bpy and are loaded only inside Blender.
"""
