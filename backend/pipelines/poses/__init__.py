"""Camera solve (matchmove): video or image folder -> cameras in Blender coordinates."""
