"""The job store on disk: one folder per job with ``manifest.json``, ``out/`` and ``arrays/``.

Manifests are written atomically. Finished jobs are indexed by their cache key so an
identical request is answered from disk, also after a server restart.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.fileutil import sha256_file
from shared_protocol.atomic import atomic_write_json
from shared_protocol.messages import FINAL_STATES


@dataclass
class JobRecord:
    job_id: str
    kind: str
    params: dict
    cache_key: str
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    stage: str = ""
    fraction: float = 0.0
    error: dict | None = None
    files: list[dict] = field(default_factory=list)
    arrays: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    node: str | None = None  # the Ray node that ran it (jobs on a Ray cluster only)
    retries: int = 0  # times it was run again because its Ray node died

    def public(self) -> dict[str, Any]:
        info = {"job_id": self.job_id, "kind": self.kind, "state": self.state, "stage": self.stage,
                "fraction": self.fraction, "created": self.created, "started": self.started,
                "finished": self.finished, "error": self.error}
        if self.node is not None:
            info["node"] = self.node
        if self.retries:
            info["retries"] = self.retries
        return info


class JobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.jobs_dir = self.root / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, JobRecord] = {}
        self.by_key: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        for manifest in sorted(self.jobs_dir.glob("*/manifest.json")):
            try:
                rec = JobRecord(**json.loads(manifest.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if rec.state not in FINAL_STATES:
                rec.state = "failed"
                rec.finished = time.time()
                rec.error = {"code": "job_crashed", "message": "the server stopped before the job finished",
                             "hint": "submit it again"}
                self.save(rec)
            self.jobs[rec.job_id] = rec
            if rec.state == "done":
                self.by_key[rec.cache_key] = rec.job_id

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def create(self, rec: JobRecord) -> Path:
        d = self.job_dir(rec.job_id)
        d.mkdir(parents=True)
        self.jobs[rec.job_id] = rec
        self.save(rec)
        return d

    def save(self, rec: JobRecord) -> None:
        atomic_write_json(self.job_dir(rec.job_id) / "manifest.json", asdict(rec))

    def cached(self, cache_key: str) -> JobRecord | None:
        job_id = self.by_key.get(cache_key)
        rec = self.jobs.get(job_id) if job_id else None
        if rec is None or rec.state != "done" or not (self.job_dir(rec.job_id) / "manifest.json").exists():
            return None
        return rec

    def finish(self, rec: JobRecord, state: str, *, error: dict | None = None,
               files: list[str] | None = None, arrays: list[str] | None = None, summary: dict | None = None) -> None:
        rec.state = state
        rec.finished = time.time()
        rec.error = error
        if state == "done":
            out = self.job_dir(rec.job_id) / "out"
            rec.files = [{"name": f, "size": (out / f).stat().st_size, "sha256": sha256_file(out / f)}
                         for f in files or []]
            rec.arrays = list(arrays or [])
            rec.summary = summary or {}
            rec.fraction = 1.0
            self.by_key[rec.cache_key] = rec.job_id
        else:
            discard_output(self.job_dir(rec.job_id))
        self.save(rec)

    def load_arrays(self, rec: JobRecord) -> dict[str, np.ndarray]:
        folder = self.job_dir(rec.job_id) / "arrays"
        out = {}
        for name in rec.arrays:
            try:
                out[name] = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            except ValueError:  # empty arrays cannot be memory-mapped
                out[name] = np.load(folder / f"{name}.npy", allow_pickle=False)
        return out

    def file_path(self, rec: JobRecord, name: str) -> Path | None:
        for entry in rec.files:
            if entry["name"] == name:
                return self.job_dir(rec.job_id) / "out" / name
        return None


def discard_output(job_dir: Path) -> None:
    """Remove what a run left in a job's folder: ``out/``, ``arrays/`` and the runner's
    unfinished ``.out.*.partial`` folders (a run may die between publishing its output and
    reporting its result), so that only a complete run is ever published."""
    for path in [Path(job_dir) / "out", Path(job_dir) / "arrays", *Path(job_dir).glob(".out.*.partial")]:
        shutil.rmtree(path, ignore_errors=True)
