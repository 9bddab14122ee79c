"""Run a job kind in this process, publishing its outputs atomically.

The pipeline writes into a fresh hidden folder beside ``out_dir``; on success the folder is
moved into place (a rename when ``out_dir`` does not exist yet, otherwise each file is
replaced atomically); on failure or cancellation it is deleted, so no partial output is left.
"""
from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path

from backend.jobs import KINDS, JobResult
from backend.progress import JobError, Progress
from shared_protocol.atomic import publish_dir_mode


def run_job(kind_name: str, params: dict, out_dir: Path, progress: Progress | None = None) -> JobResult:
    kind = KINDS.get(kind_name)
    if kind is None:
        raise JobError(f"unknown job kind {kind_name!r}", "unknown_kind", f"known kinds: {', '.join(sorted(KINDS))}")
    try:
        func = kind.load()
    except (ImportError, AttributeError) as exc:
        raise JobError(f"job kind {kind_name!r} is not available in this installation ({exc})", "unknown_kind") from None
    progress = progress or Progress()
    stages = getattr(importlib.import_module(kind.entry.partition(":")[0]), "STAGES", None)
    if stages and not progress.has_stages:
        progress.set_stages(stages)
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        result = func(params, tmp, progress)
        if not isinstance(result, JobResult):
            raise TypeError(f"job kind {kind_name!r} returned {type(result).__name__}, not JobResult")
        missing = [f for f in result.files if not (tmp / f).is_file()]
        if missing:
            raise RuntimeError(f"job kind {kind_name!r} listed files it did not write: {missing[:3]}")
        publish_dir_mode(tmp)
        publish(tmp, out_dir)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(src: Path, dst: Path) -> None:
    """Move the contents of ``src`` into ``dst`` (atomically per file; whole-folder rename if new)."""
    if not dst.exists():
        os.rename(src, dst)
        return
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        target = dst / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
