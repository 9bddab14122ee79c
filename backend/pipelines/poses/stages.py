"""Progress stages of the camera solve, in order, with relative weights for
``Progress(stages=STAGES)`` (importable without pycolmap)."""

STAGES = [("decode", 1), ("track", 30), ("keyframes", 1), ("sfm", 20), ("register", 10),
          ("bundle_adjust", 30), ("ground_plane", 2)]
