"""Stereo from a mono clip: depth-warp stereo for any clip and scene stereo from splats.

Modules: ``warp`` (z-buffered forward splatting, numpy and torch), ``disparity`` (depth to
disparity, convergence, budget), ``fill`` (spatial, depth-aware hole filling), ``temporal``
(holes filled from neighbouring frames), ``colour`` (left/right colour matching), ``layouts``
(sbs, half-sbs, tab, anaglyph, debug grid), ``chunks`` (bounded-memory sliding windows),
``depth`` (depth sources), ``pipeline`` (the depth-warp method end to end).
"""
