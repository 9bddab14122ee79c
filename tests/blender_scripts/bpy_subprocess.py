"""Run a script under Blender's Python (the ``bpy`` module) in a fresh subprocess.

The interpreter is ``$SPLATSTAGE_BPY_PYTHON`` when set (``tests/run_blender_lts.sh`` points it
at a bpy 4.2 / 4.5 environment), else the interpreter running pytest. Blender's user
resources (preferences, extensions) go to a private temporary folder so tests never touch the
real user configuration.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent
DATA = Path(os.environ.get("SPLATSTAGE_SHARED_DATA") or REPO.parent / "shared" / "data")  # as tests/conftest.py


def bpy_python() -> str:
    return os.environ.get("SPLATSTAGE_BPY_PYTHON") or sys.executable


def run_script(name: str, *args, user_dir: Path, timeout: float = 180, extra_env: dict | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    """Run ``tests/blender_scripts/<name>`` with ``args``; raise with its output if it fails."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["BLENDER_USER_RESOURCES"] = str(user_dir)
    env.update(extra_env or {})
    proc = subprocess.run([bpy_python(), str(SCRIPTS / name), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
