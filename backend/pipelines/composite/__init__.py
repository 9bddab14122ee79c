"""The main job: a product GLB composited into footage (see :mod:`.pipeline`).

Pieces usable on their own: :mod:`.placement` (anchor where the ground plane meets a pixel,
projection of the anchor per frame), :mod:`.layers` (footage and splat depth per frame),
:mod:`.envmap` (equirectangular environment map from the splats), :mod:`.blender` (the
Blender render + compositor subprocess), :mod:`.settings` (full vs ``--preview``) and
:mod:`.stereo` (the right eye of ``--stereo``: splat layer from the offset camera, product
from Blender's stereo rig).
"""
from .pipeline import CompositeRequest, composite
from .settings import CompositeSettings
from .stereo import StereoOptions

__all__ = ["CompositeRequest", "CompositeSettings", "StereoOptions", "composite"]
