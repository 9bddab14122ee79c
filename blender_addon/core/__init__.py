"""The add-on's bpy-free layer: file formats, camera maths, validation and the backend link.

Nothing here imports ``bpy``; it is tested in plain Python and reused by ``batch.py``.
"""
