"""Learned models loaded only from ``weights/`` (or a given folder), never downloaded.

- :mod:`.depth`: monocular depth (a transformers depth-estimation folder or the exported
  relative-depth network of ``stereo``), metric or relative.
- :mod:`.pointmaps`: the multi-view pointmap network of ``poses --method learned``.

Pipelines call models only through these interfaces, so tests can plug in stand-ins that
return a synthetic scene's truth.
"""
from pathlib import Path

#: The project's weights folder (``weights/`` at the repository root).
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
