"""Access to ``shared_protocol``: the copy vendored inside the built extension, else the
top-level package of a source checkout."""
from __future__ import annotations

import importlib

try:
    from . import shared_protocol  # type: ignore[attr-defined]  # vendored by build_addon.py
except ImportError:
    import shared_protocol  # noqa: F401


def module(name: str):
    """Import ``shared_protocol.<name>`` (e.g. ``"client"``) from whichever copy is in use."""
    return importlib.import_module(f"{shared_protocol.__name__}.{name}")
