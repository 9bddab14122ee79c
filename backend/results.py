"""What a job hands back (:class:`JobResult`): a plain record every layer may build.

Pipelines that produce a job's whole output (the stereo paths) return it directly; the job
registry (``backend.jobs``) re-exports it for the job modules and the runner.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class JobResult:
    """What a pipeline hands back: files it wrote (relative to ``out_dir``), arrays, a summary."""

    files: list[str] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
