"""The built-in ``sleep`` job: waits ``seconds`` in ``steps`` steps, reporting progress.

``fail`` makes it fail on purpose, for tests of the server's isolation: ``"raise"`` (an
exception), ``"exit"`` (``os._exit``) or ``"segfault"`` (a real segmentation fault).
``result_mib`` returns a float32 array of that size, for transport tests.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from backend.jobs import JobResult
from backend.progress import JobError, Progress

FAILURES = ("raise", "exit", "segfault")


def run(params: dict, out_dir: Path, progress: Progress) -> JobResult:
    seconds = _number(params, "seconds", 1.0)
    steps = _number(params, "steps", 10)
    fail = params.get("fail")
    result_mib = _number(params, "result_mib", 0.0)
    if steps != int(steps):
        raise JobError(f"sleep: steps must be an integer, not {steps!r}", "bad_params")
    steps = int(steps)
    if not (0 <= seconds <= 3600) or not (1 <= steps <= 100000):
        raise JobError("sleep: seconds must be in [0, 3600] and steps in [1, 100000]", "bad_params")
    if fail is not None and fail not in FAILURES:
        raise JobError(f"sleep: fail must be one of {', '.join(FAILURES)}", "bad_params")
    if not (0 <= result_mib <= 4096):
        raise JobError("sleep: result_mib must be in [0, 4096]", "bad_params")
    progress.stage("sleep")
    for i in range(steps):
        if fail and i == steps // 2:
            _fail(fail)
        time.sleep(seconds / steps)
        progress.update((i + 1) / steps, f"step {i + 1}/{steps}")
    (out_dir / "slept.txt").write_text(f"{seconds}\n")
    arrays = {"steps": np.arange(steps, dtype=np.int32)}
    if result_mib:
        n = int(result_mib * (1 << 20) // 4)
        arrays["payload"] = np.arange(n, dtype=np.float32)
    return JobResult(files=["slept.txt"], arrays=arrays, summary={"seconds": seconds, "steps": steps})


def _number(params: dict, name: str, default: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JobError(f"sleep: {name} must be a number, not {value!r}", "bad_params")
    return float(value)


def _fail(how: str) -> None:
    if how == "raise":
        raise RuntimeError("sleep job failed on purpose")
    if how == "exit":
        os._exit(3)
    import ctypes

    ctypes.string_at(0)  # dereference NULL: SIGSEGV
