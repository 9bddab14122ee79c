"""Where reconstruction keeps what outlives a job: checkpoints and gsplat's compiled extension.

``$SPLATSTAGE_CACHE`` if set; else ``.cache`` in the source checkout (beside pyproject.toml);
else ``~/.cache/splatstage`` for an installed package.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    env = os.environ.get("SPLATSTAGE_CACHE")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[3]
    if (root / "pyproject.toml").is_file():
        return root / ".cache"
    return Path.home() / ".cache" / "splatstage"


def use_project_extension_cache() -> Path:
    """Point torch's JIT extension builds (gsplat's CUDA kernels) at ``<cache>/torch_extensions``
    unless ``TORCH_EXTENSIONS_DIR`` is already set; returns the folder."""
    if "TORCH_EXTENSIONS_DIR" not in os.environ:
        os.environ["TORCH_EXTENSIONS_DIR"] = str(cache_dir() / "torch_extensions")
    return Path(os.environ["TORCH_EXTENSIONS_DIR"])
