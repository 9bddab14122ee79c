"""Run the bpy-side shot renderer (:mod:`blender_addon.compositing.shot`) in a subprocess.

The interpreter is ``sys.executable`` (the project environment has the ``bpy`` module), so bpy
is never imported into the backend process; ``$SPLATSTAGE_BPY_PYTHON`` names another one (an
environment with another Blender's bpy, as ``tests/run_blender_lts.sh`` sets it). Progress
lines are forwarded; a cancellation kills the renderer (frames already finished stay on disk
for the next run).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path

from backend.progress import JobError, Progress

REPO = Path(__file__).resolve().parents[3]
_FRAME = re.compile(r"composite: frame (\d+)/(\d+) video (\d+) (rendered|skipped)")


def run_shot(spec: dict, spec_path: Path, progress: Progress | None = None, timeout: float | None = None) -> dict:
    """Write ``spec`` to ``spec_path``, render it and return the renderer's counts
    (``rendered``, ``skipped``, ``seconds``); raises JobError with the renderer's error line."""
    spec_path.write_text(json.dumps(spec, indent=1))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    python = os.environ.get("SPLATSTAGE_BPY_PYTHON") or sys.executable
    cmd = [python, "-m", "blender_addon.compositing.shot", str(spec_path)]
    result: dict = {}
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=str(REPO))
        try:
            for line in proc.stdout:
                m = _FRAME.match(line)
                if m and progress is not None:
                    k, n = int(m.group(1)), int(m.group(2))
                    progress.update(k / n, f"frame {k}/{n} (video {m.group(3)}) {m.group(4)}")
                    progress.check()
                elif line.startswith("composite: result "):
                    result = json.loads(line[len("composite: result "):])
            code = proc.wait(timeout=timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        err.seek(0)
        lines = deque((ln for ln in err.read().splitlines() if ln.strip()), maxlen=30)
    if code != 0:
        msg = next((ln for ln in reversed(lines) if ln.startswith("composite: error: ")), None)
        if msg:
            raise JobError(f"composite: {msg[len('composite: error: '):]}", "render_failed")
        raise JobError(f"composite: the Blender renderer failed (exit {code}): {lines[-1] if lines else ''}",
                       "render_failed")
    return result
