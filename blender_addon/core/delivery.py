"""Moving a finished job's downloaded files to where the artist asked for them, atomically.

The backend link downloads a result's files into a private staging folder (:func:`staging_dir`);
:func:`deliver_file` and :func:`deliver_folder` then put them in place with a rename, so the
output path only ever holds a complete file (or the previous one), and remove the staging
folder. Nothing here imports ``bpy``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path


def staging_dir(label: str) -> Path:
    """A fresh (not yet existing) folder under the system temp folder for a job's downloads."""
    return Path(tempfile.gettempdir()) / f"splatstage-{label}-{uuid.uuid4().hex[:12]}"


def deliver_file(files: dict, name: str, out_path: str | Path, staging: str | Path | None = None) -> Path:
    """Move the downloaded result file ``name`` (``files``: name -> local path) to ``out_path``.

    The file is copied next to ``out_path`` under a hidden temporary name first and then renamed
    over it, so a crash leaves either the old file or the new one. ``staging`` is removed
    afterwards (also on failure). Raises RuntimeError when the result lacks the file.
    """
    out = Path(out_path)
    try:
        src = files.get(name)
        if not src or not Path(src).is_file():
            raise RuntimeError(f"the result has no {name}")
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(f".{out.name}.part-{uuid.uuid4().hex[:8]}")
        try:
            shutil.move(str(src), str(part))
            os.replace(part, out)
        finally:
            part.unlink(missing_ok=True)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return out


def deliver_folder(staging: str | Path, out_dir: str | Path) -> Path:
    """Replace the folder ``out_dir`` by the downloaded folder ``staging``.

    The new folder is moved beside ``out_dir`` and swapped in by renames; the previous contents
    are removed only after the swap. ``staging`` does not exist afterwards.
    """
    staging, out = Path(staging), Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    part, old = out.with_name(f".{out.name}.part-{tag}"), out.with_name(f".{out.name}.old-{tag}")
    swapped = False
    try:
        shutil.move(str(staging), str(part))
        if out.exists():
            os.replace(out, old)
            swapped = True
        try:
            os.replace(part, out)
        except OSError:
            if swapped:
                os.replace(old, out)
            raise
    finally:
        shutil.rmtree(part, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    return out
