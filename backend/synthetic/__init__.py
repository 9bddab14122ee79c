"""Synthetic ground-truth clips rendered with Blender (bpy) in a subprocess.

:func:`make_clip` runs ``python -m backend.synthetic.render`` with ``sys.executable`` so that
bpy is never imported into the calling process, and returns the paths of what it wrote.
See ``docs/synthetic.md`` for the output layout and the truth.json extras.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Callable

_REPO_ROOT = Path(__file__).resolve().parents[2]
_PROGRESS = re.compile(r"rendered frame (\d+)/(\d+)")


def _cli_args(options: dict) -> list[str]:
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, (tuple, list)):
            args += [flag, *map(str, value)]
        else:
            args += [flag, str(value)]
    return args


def staging_dir(out_dir: str | Path, pid: int) -> Path:
    """Hidden sibling folder the renderer with process id ``pid`` writes into before renaming."""
    out = Path(out_dir).resolve()
    return out.parent / f".{out.name}.partial-{pid}"


def clip_paths(out_dir: str | Path) -> dict[str, Path]:
    """Paths of a rendered clip's outputs (right-eye keys only when ``right/`` exists)."""
    out = Path(out_dir)
    paths = {"dir": out, "frames": out / "frames", "depth": out / "depth", "video": out / "clip.mp4",
             "truth": out / "truth.json"}
    if (out / "right").is_dir():
        r = out / "right"
        paths.update(right_frames=r / "frames", right_depth=r / "depth", right_video=r / "clip.mp4",
                     right_truth=r / "truth.json")
    if (out / "scene.blend").exists():
        paths["blend"] = out / "scene.blend"
    return paths


def make_clip(out_dir: str | Path, *, path: str = "handheld", width: int = 320, height: int = 180,
              frames: int = 24, fps: float = 24.0, focal_mm: float | None = None,
              focal_px: float | None = None, pp_offset: tuple[float, float] = (0.0, 0.0),
              samples: int = 8, denoise: bool = False, seed: int = 0, engine: str = "CYCLES",
              threads: int = 2, device: str = "CPU", stereo: float | None = None,
              occluder: bool = False, video: bool = True, save_blend: bool = False,
              timeout: float | None = None,
              progress: Callable[[int, int], None] | None = None, **more) -> dict[str, Path]:
    """Render a synthetic clip into ``out_dir`` (absent or empty) and return its output paths.

    Keyword options mirror the CLI flags of ``python -m backend.synthetic.render`` (``--help``
    lists them; further ones such as ``cam_height``, ``jitter_mm``, ``pan_deg`` pass through
    ``more``). ``progress(done, total)`` is called after each rendered frame; an exception it
    raises (e.g. a cancellation) stops the renderer and propagates. Raises RuntimeError carrying
    the tail of the renderer's stderr on failure or timeout. Nothing is left behind on failure.
    """
    options = dict(path=path, width=width, height=height, frames=frames, fps=fps, focal_mm=focal_mm,
                   focal_px=focal_px, pp_offset=tuple(pp_offset), samples=samples, denoise=denoise,
                   seed=seed, engine=engine, threads=threads, device=device, stereo=stereo, occluder=occluder,
                   no_video=not video, save_blend=save_blend, **more)
    cmd = [sys.executable, "-m", "backend.synthetic.render", "--out", str(Path(out_dir).resolve()),
           *_cli_args(options)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            for line in proc.stdout:
                m = _PROGRESS.match(line)
                if m and progress is not None:
                    progress(int(m.group(1)), int(m.group(2)))
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            shutil.rmtree(staging_dir(out_dir, proc.pid), ignore_errors=True)
            raise
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        tail = "\n".join(deque(err.read().strip().splitlines(), maxlen=20))
    if code != 0:
        shutil.rmtree(staging_dir(out_dir, proc.pid), ignore_errors=True)
        if timed_out.is_set():
            raise RuntimeError(f"synthetic render into {out_dir} timed out after {timeout} s")
        raise RuntimeError(f"synthetic render into {out_dir} failed (exit {code}):\n{tail}")
    return clip_paths(out_dir)
