"""The add-on's bpy layer: builds Blender data from the bpy-free ``core`` results."""
